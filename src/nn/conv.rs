//! The convolutions every network calls: f32 on the CPU through `perception_kernels` (im2col
//! into tiled GEMMs, forward and backward), everything else (CUDA, dilation, groups) through
//! Candle's own ops. `PERCEPTION_KERNELS=candle` sends the CPU through Candle's ops too, for
//! before/after benchmarks and for bisecting a numerical difference.

use std::sync::OnceLock;

use candle_core::{DType, Module, ModuleT, Result, Tensor, Var};
use candle_nn::{BatchNorm, Conv2d, Conv2dConfig, ConvTranspose2d};
use perception_kernels::Conv2dParams;

/// Whether the CPU kernels are on (`PERCEPTION_KERNELS` is not `candle`), read once.
pub fn cpu_kernels_enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("PERCEPTION_KERNELS").map_or(true, |v| v != "candle"))
}

/// `conv`'s convolution with its bias, as `conv.forward(x)`.
pub fn conv2d(conv: &Conv2d, x: &Tensor) -> Result<Tensor> {
    conv2d_bias_relu(x, conv.weight(), conv.bias(), conv.config(), false)
}

/// `relu(conv(x, weight) + bias)`, or without the ReLU; one pass over the output on the CPU.
///
/// # Shapes
/// x (B, C_in, H, W), weight (C_out, C_in / groups, kH, kW), bias (C_out) -> (B, C_out, H', W')
pub fn conv2d_bias_relu(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: &Conv2dConfig,
    relu: bool,
) -> Result<Tensor> {
    if kernels_apply(x, cfg) {
        let zeros;
        let bias = match bias {
            Some(bias) => bias,
            None => {
                zeros = Tensor::zeros(weight.dim(0)?, DType::F32, x.device())?;
                &zeros
            }
        };
        let params = Conv2dParams {
            stride: cfg.stride,
            padding: cfg.padding,
        };
        return perception_kernels::conv2d(x, weight, bias, params, relu);
    }
    let y = candle_conv2d(x, weight, cfg)?;
    let y = match bias {
        Some(bias) => y.broadcast_add(&bias.reshape((1, (), 1, 1))?)?,
        None => y,
    };
    if relu {
        y.relu()
    } else {
        Ok(y)
    }
}

/// Whether perception_kernels' CPU convolution runs `x` through a convolution of `cfg`.
fn kernels_apply(x: &Tensor, cfg: &Conv2dConfig) -> bool {
    x.device().is_cpu()
        && x.dtype() == DType::F32
        && cfg.groups == 1
        && cfg.dilation == 1
        && cpu_kernels_enabled()
}

/// Candle's conv2d with a correctly shaped input gradient for every stride.
///
/// candle 0.11's conv2d backward derives the output padding of its transposed convolution
/// from the height alone, so a strided convolution whose height and width leave different
/// remainders `(n + 2p - k) mod s` gets an input gradient of the wrong width (found by the
/// PyTorch golden tests). Such inputs are padded here and trimmed to exactly the rows and
/// columns the kernel reads; the trimmed ones get zero gradient, as they should.
fn candle_conv2d(x: &Tensor, weight: &Tensor, cfg: &Conv2dConfig) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (_, _, kh, kw) = weight.dims4()?;
    let reach = |n: usize, k: usize| (n + 2 * cfg.padding).checked_sub(cfg.dilation * (k - 1) + 1);
    let conv =
        |x: &Tensor, padding| x.conv2d(weight, padding, cfg.stride, cfg.dilation, cfg.groups);
    let (Some(span_h), Some(span_w)) = (reach(h, kh), reach(w, kw)) else {
        // Kernel larger than the input: let candle report it.
        return conv(x, cfg.padding);
    };
    let (rem_h, rem_w) = (span_h % cfg.stride, span_w % cfg.stride);
    if rem_h == rem_w {
        return conv(x, cfg.padding);
    }
    let p = cfg.padding;
    let padded = x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?;
    let trimmed = padded
        .narrow(2, 0, h + 2 * p - rem_h)?
        .narrow(3, 0, w + 2 * p - rem_w)?;
    conv(&trimmed, 0)
}

/// The weight and bias of `conv` followed by `bn` in eval mode, as one convolution:
/// `w' = w * s`, `b' = beta + (b - mean) * s` with `s = gamma / sqrt(var + eps)`.
///
/// Computed from the current running statistics on every call (nothing is stored), so it is
/// exact for inference and never goes stale under training.
pub fn fold_batch_norm(conv: &Conv2d, bn: &BatchNorm) -> Result<(Tensor, Tensor)> {
    let (scale, bias) = batch_norm_affine(conv, bn)?;
    let weight = conv
        .weight()
        .broadcast_mul(&scale.reshape(((), 1, 1, 1))?)?;
    Ok((weight, bias))
}

/// `conv` then `bn` with its running statistics (then a ReLU if `relu`). On the CPU one op
/// that scales and shifts each output channel as it writes it: folding the batch norm into
/// the weights instead is a pass over all of them per call, as costly as the convolution
/// itself for a ResNet's deep layers at batch 1 (PoseNet 13.1 -> 9.2 ms). Elsewhere the
/// folded convolution.
///
/// # Shapes
/// x (B, C_in, H, W) -> (B, C_out, H', W')
pub fn conv2d_batch_norm_eval(
    x: &Tensor,
    conv: &Conv2d,
    bn: &BatchNorm,
    relu: bool,
) -> Result<Tensor> {
    let cfg = conv.config();
    if kernels_apply(x, cfg) {
        let (scale, bias) = batch_norm_affine(conv, bn)?;
        let params = Conv2dParams {
            stride: cfg.stride,
            padding: cfg.padding,
        };
        return perception_kernels::conv2d_affine(x, conv.weight(), &scale, &bias, params, relu);
    }
    let (weight, bias) = fold_batch_norm(conv, bn)?;
    conv2d_bias_relu(x, &weight, Some(&bias), cfg, relu)
}

/// Per output channel, `bn(conv(x)) = scale * (weight * x) + bias`.
fn batch_norm_affine(conv: &Conv2d, bn: &BatchNorm) -> Result<(Tensor, Tensor)> {
    let mean = bn.running_mean();
    let std = (bn.running_var() + bn.eps())?.sqrt()?;
    let (scale, shift) = match bn.weight_and_bias() {
        Some((gamma, beta)) => ((gamma / std)?, beta.clone()),
        None => (std.recip()?, mean.zeros_like()?),
    };
    let centred = match conv.bias() {
        Some(bias) => (bias - mean)?,
        None => mean.neg()?,
    };
    let bias = (shift + (&centred * &scale)?)?;
    Ok((scale, bias))
}

/// `bn` in training mode on `x` (batch statistics, running statistics updated as Candle's
/// BatchNorm::forward_train does: momentum-weighted, unbiased variance), then a ReLU if
/// `relu`. Two passes of perception_kernels on the CPU, Candle's op elsewhere.
pub fn batch_norm_train(x: &Tensor, bn: &BatchNorm, relu: bool) -> Result<Tensor> {
    let kernels_apply =
        x.device().is_cpu() && x.dtype() == DType::F32 && x.rank() == 4 && cpu_kernels_enabled();
    if !kernels_apply {
        let y = bn.forward_t(x, true)?;
        return if relu { y.relu() } else { Ok(y) };
    }
    let channels = x.dim(1)?;
    if bn.running_mean().dims() != [channels] {
        candle_core::bail!(
            "batch norm of {} channels applied to an input of {channels}",
            bn.running_mean().elem_count()
        );
    }
    let moments = perception_kernels::channel_moments(x)?;
    let (mean, var) = (moments.get(0)?, moments.get(1)?);
    let count = (x.elem_count() / channels) as f64;
    let m = bn.momentum();
    let running_mean = Var::from_tensor(bn.running_mean())?;
    running_mean.set(&((bn.running_mean() * (1.0 - m))? + (mean * m)?)?)?;
    let running_var = Var::from_tensor(bn.running_var())?;
    let unbiased = (var * (m * count / (count - 1.0).max(1.0)))?;
    running_var.set(&((bn.running_var() * (1.0 - m))? + unbiased)?)?;
    let affine = match bn.weight_and_bias() {
        Some((gamma, beta)) => Tensor::stack(&[gamma, beta], 0)?,
        None => Tensor::stack(
            &[
                Tensor::ones(channels, DType::F32, x.device())?,
                Tensor::zeros(channels, DType::F32, x.device())?,
            ],
            0,
        )?,
    };
    perception_kernels::batch_norm_train(x, &affine, &moments, bn.eps(), relu)
}

/// `up`'s transposed convolution, as `up.forward(x)`. When the kernel equals the stride with
/// no padding (the U-Net's 2x2 stride-2 up-convolution), the output windows do not overlap and
/// the whole layer is one GEMM, `(C_out kH kW, C_in) x (C_in, H W)`, followed by a reshuffle
/// of its rows into the windows: perception_kernels' op on the CPU, Candle's matmul and
/// permute elsewhere (differentiable either way). Other geometries use Candle's op.
pub fn conv_transpose2d(up: &ConvTranspose2d, x: &Tensor) -> Result<Tensor> {
    let cfg = up.config();
    let weight = up.weight();
    let (c_in, c_out, kh, kw) = weight.dims4()?;
    let windows_tile = kh == cfg.stride
        && kw == cfg.stride
        && cfg.padding == 0
        && cfg.output_padding == 0
        && cfg.dilation == 1;
    if !(windows_tile && cpu_kernels_enabled()) {
        return up.forward(x);
    }
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        let zeros;
        let bias = match up.bias() {
            Some(bias) => bias,
            None => {
                zeros = Tensor::zeros(c_out, DType::F32, x.device())?;
                &zeros
            }
        };
        return perception_kernels::up_conv2d(x, weight, bias);
    }
    let (b, _, h, w) = x.dims4()?;
    let rows = weight.reshape((c_in, c_out * kh * kw))?.t()?;
    let y = rows.broadcast_matmul(&x.reshape((b, c_in, h * w))?)?;
    let y = y
        .reshape((b, c_out, kh, kw, h, w))?
        .permute((0, 1, 4, 2, 5, 3))?
        .reshape((b, c_out, h * kh, w * kw))?;
    match up.bias() {
        Some(bias) => y.broadcast_add(&bias.reshape((1, (), 1, 1))?),
        None => Ok(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use candle_nn::{BatchNormConfig, ConvTranspose2dConfig, VarBuilder, VarMap};

    fn ramp(shape: &[usize], scale: f64) -> Tensor {
        let count: usize = shape.iter().product();
        let values: Vec<f32> = (0..count)
            .map(|i| (scale * (0.37 * i as f64 + 0.2).sin()) as f32)
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn the_up_convolution_as_one_gemm_equals_candles_forward_and_gradients() {
        for (c_in, c_out, k, bias) in [(4, 3, 2, true), (5, 17, 2, false), (3, 2, 3, true)] {
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            let cfg = ConvTranspose2dConfig {
                stride: k,
                ..Default::default()
            };
            let up = if bias {
                candle_nn::conv_transpose2d(c_in, c_out, k, cfg, vb).unwrap()
            } else {
                candle_nn::conv_transpose2d_no_bias(c_in, c_out, k, cfg, vb).unwrap()
            };
            let x = Var::from_tensor(&ramp(&[2, c_in, 5, 7], 1.0)).unwrap();
            let ours = conv_transpose2d(&up, &x).unwrap();
            let theirs = up.forward(&x).unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            assert!(max_abs_diff(&ours, &theirs) < 1e-5);
            let probe = ramp(ours.dims(), 0.5);
            let g1 = (&ours * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g2 = (&theirs * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            assert!(max_abs_diff(g1.get(&x).unwrap(), g2.get(&x).unwrap()) < 1e-4);
            for var in varmap.all_vars() {
                let (a, b) = (g1.get(&var).unwrap(), g2.get(&var).unwrap());
                assert!(max_abs_diff(a, b) < 1e-4, "{c_in}->{c_out} k{k}");
            }
        }
    }

    #[test]
    fn training_batch_norm_equals_candles_output_gradients_and_running_statistics() {
        let make = || {
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            let bn = candle_nn::batch_norm(5, BatchNormConfig::default(), vb).unwrap();
            (varmap, bn)
        };
        let (ours_map, ours_bn) = make();
        let (theirs_map, theirs_bn) = make();
        let x = Var::from_tensor(&(ramp(&[2, 5, 6, 7], 2.0) + 0.3).unwrap()).unwrap();
        let probe = ramp(&[2, 5, 6, 7], 0.7);
        let ours = batch_norm_train(&x, &ours_bn, true).unwrap();
        let theirs = ours_bn_reference(&theirs_bn, &x);
        assert!(max_abs_diff(&ours, &theirs) < 1e-5);
        let g1 = (&ours * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g2 = (&theirs * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(max_abs_diff(g1.get(&x).unwrap(), g2.get(&x).unwrap()) < 1e-4);
        let data = |map: &VarMap| {
            let data = map.data().lock().unwrap();
            let mut named: Vec<(String, Var)> =
                data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            named.sort_by(|a, b| a.0.cmp(&b.0));
            named
        };
        for ((name, a), (_, b)) in data(&ours_map).iter().zip(&data(&theirs_map)) {
            assert!(max_abs_diff(a, b) < 1e-6, "{name} after one step");
            if let (Some(ga), Some(gb)) = (g1.get(a), g2.get(b)) {
                assert!(max_abs_diff(ga, gb) < 1e-4, "gradient of {name}");
            }
        }
    }

    fn ours_bn_reference(bn: &BatchNorm, x: &Tensor) -> Tensor {
        bn.forward_t(x, true).unwrap().relu().unwrap()
    }

    #[test]
    fn a_folded_batch_norm_equals_conv_then_batch_norm_in_eval_mode() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let cfg = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let conv = candle_nn::conv2d(3, 6, 3, cfg, vb.pp("conv")).unwrap();
        let bn = candle_nn::batch_norm(6, BatchNormConfig::default(), vb.pp("bn")).unwrap();
        // Running statistics away from their initial 0 and 1.
        for (name, var) in varmap.data().lock().unwrap().iter() {
            if name.contains("running") || name.starts_with("bn.") {
                let shifted = (ramp(var.dims(), 0.4) + 1.0).unwrap();
                var.set(&shifted).unwrap();
            }
        }
        let x = ramp(&[1, 3, 9, 8], 1.0);
        let expected = bn.forward_t(&conv.forward(&x).unwrap(), false).unwrap();
        let (weight, bias) = fold_batch_norm(&conv, &bn).unwrap();
        let folded = conv2d_bias_relu(&x, &weight, Some(&bias), &cfg, false).unwrap();
        assert!(max_abs_diff(&folded, &expected) < 1e-5);
        let relu = conv2d_bias_relu(&x, &weight, Some(&bias), &cfg, true).unwrap();
        assert!(max_abs_diff(&relu, &expected.relu().unwrap()) < 1e-5);
        // The same without folding: the scale and shift applied as the outputs are written.
        for relu in [false, true] {
            let ours = conv2d_batch_norm_eval(&x, &conv, &bn, relu).unwrap();
            let want = if relu {
                expected.relu().unwrap()
            } else {
                expected.clone()
            };
            assert!(max_abs_diff(&ours, &want) < 1e-5);
        }
    }
}
