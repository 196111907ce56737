//! Max and average pooling with PyTorch's padding and floor rounding, and global average pooling.

use candle_core::{Result, Tensor};

/// Square pooling window: kernel, stride and zero/-inf padding, PyTorch's floor rounding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSpec {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl PoolSpec {
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Self {
        Self {
            kernel,
            stride,
            padding,
        }
    }

    /// Output length along one axis: `floor((n + 2p - k) / s) + 1`.
    pub fn output_len(&self, input: usize) -> Option<usize> {
        (input + 2 * self.padding)
            .checked_sub(self.kernel)
            .map(|n| n / self.stride + 1)
    }
}

/// Max pooling with any kernel, stride and padding (padding never wins, as in PyTorch).
///
/// On the CPU one pass of perception_kernels (the gradient to each window's first maximum, as
/// PyTorch's); elsewhere built from strided views and element-wise maxima (ties share the
/// gradient). Both gradients are exact: candle 0.11's `max_pool2d` backward passes a quarter
/// of the gradient to the maximum (notes/candle-facts.md).
///
/// # Shapes
/// (B, C, H, W) -> (B, C, H', W'), H' from [`PoolSpec::output_len`]
pub fn max_pool2d(x: &Tensor, spec: PoolSpec) -> Result<Tensor> {
    if spec.kernel == 2 && spec.stride == 2 && spec.padding == 0 {
        return max_pool2x2(x);
    }
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && super::cpu_kernels_enabled() {
        return perception_kernels::max_pool2d(x, spec.kernel, spec.stride, spec.padding);
    }
    let mut windows = windows(x, spec, f32::NEG_INFINITY)?.into_iter();
    let first = windows.next().expect("kernel >= 1");
    windows.try_fold(first, |acc, w| acc.maximum(&w))
}

/// Average pooling with any kernel, stride and padding; padded zeros count in the average
/// (PyTorch's default `count_include_pad=True`).
///
/// # Shapes
/// (B, C, H, W) -> (B, C, H', W'), H' from [`PoolSpec::output_len`]
pub fn avg_pool2d(x: &Tensor, spec: PoolSpec) -> Result<Tensor> {
    let mut windows = windows(x, spec, 0.0)?.into_iter();
    let first = windows.next().expect("kernel >= 1");
    let sum = windows.try_fold(first, |acc, w| acc + w)?;
    sum / (spec.kernel * spec.kernel) as f64
}

/// 2x2 max pooling with stride 2 (odd trailing rows/columns dropped, as PyTorch floors).
///
/// On the CPU one pass of perception_kernels, elsewhere reshape + max; both have exact
/// gradients (Candle's own max_pool2d backward is wrong).
///
/// # Shapes
/// (B, C, H, W) -> (B, C, H/2, W/2)
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && super::cpu_kernels_enabled() {
        return perception_kernels::max_pool2x2(x);
    }
    let (b, c, h, w) = x.dims4()?;
    let (h2, w2) = (h / 2, w / 2);
    let x = if h % 2 == 1 || w % 2 == 1 {
        x.narrow(2, 0, h2 * 2)?.narrow(3, 0, w2 * 2)?
    } else {
        x.clone()
    };
    x.reshape((b, c, h2, 2, w2, 2))?.max(5)?.max(3)
}

/// Average over the whole image: (B, C, H, W) -> (B, C).
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    x.mean(3)?.mean(2)
}

/// The `kernel * kernel` shifted, strided views of the padded input, each (B, C, H', W').
fn windows(x: &Tensor, spec: PoolSpec, pad_value: f32) -> Result<Vec<Tensor>> {
    if spec.kernel == 0 || spec.stride == 0 || spec.padding * 2 > spec.kernel {
        candle_core::bail!(
            "pooling needs kernel >= 1, stride >= 1 and padding <= kernel / 2, got {spec:?}"
        );
    }
    let (_, _, h, w) = x.dims4()?;
    let too_small = || {
        candle_core::Error::msg(format!(
            "pooling window {} (padding {}) larger than the {h}x{w} input",
            spec.kernel, spec.padding
        ))
    };
    let out_h = spec.output_len(h).ok_or_else(too_small)?;
    let out_w = spec.output_len(w).ok_or_else(too_small)?;
    let x = pad(x, spec.padding, pad_value)?;
    let mut out = Vec::with_capacity(spec.kernel * spec.kernel);
    for dy in 0..spec.kernel {
        let rows = strided(&x, 2, dy, out_h, spec.stride)?;
        for dx in 0..spec.kernel {
            out.push(strided(&rows, 3, dx, out_w, spec.stride)?);
        }
    }
    Ok(out)
}

/// Elements `start, start + stride, ...` (`count` of them) along `dim`.
fn strided(x: &Tensor, dim: usize, start: usize, count: usize, stride: usize) -> Result<Tensor> {
    if stride == 1 {
        return x.narrow(dim, start, count);
    }
    let index: Vec<u32> = (0..count).map(|i| (start + i * stride) as u32).collect();
    x.index_select(&Tensor::new(index, x.device())?, dim)
}

/// Pads H and W by `padding` on both sides with `value`.
fn pad(x: &Tensor, padding: usize, value: f32) -> Result<Tensor> {
    if padding == 0 {
        return Ok(x.clone());
    }
    let (b, c, h, w) = x.dims4()?;
    let fill = |shape: (usize, usize, usize, usize)| {
        Tensor::full(value, shape, x.device())?.to_dtype(x.dtype())
    };
    let side = fill((b, c, h, padding))?;
    let x = Tensor::cat(&[&side, x, &side], 3)?;
    let top = fill((b, c, padding, w + 2 * padding))?;
    Tensor::cat(&[&top, &x, &top], 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    fn grid(t: &Tensor) -> Vec<Vec<f32>> {
        t.squeeze(0).unwrap().squeeze(0).unwrap().to_vec2().unwrap()
    }

    #[test]
    fn max_pool2x2_matches_builtin_and_gradient_reaches_the_maximum_whole() {
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

    #[test]
    fn course_example_4x4_max_and_average_pooling() {
        let x = Tensor::new(
            &[[[
                [1f32, 1., 2., 4.],
                [5., 6., 7., 8.],
                [3., 2., 1., 0.],
                [1., 2., 3., 4.],
            ]]],
            &Device::Cpu,
        )
        .unwrap();
        let spec = PoolSpec::new(2, 2, 0);
        assert_eq!(grid(&max_pool2d(&x, spec).unwrap()), [[6., 8.], [3., 4.]]);
        assert_eq!(
            grid(&avg_pool2d(&x, spec).unwrap()),
            [[3.25, 5.25], [2., 2.]]
        );
        // Through the general path (stride 1): 3x3 output of 2x2 maxima.
        let s1 = max_pool2d(&x, PoolSpec::new(2, 1, 0)).unwrap();
        assert_eq!(grid(&s1), [[6., 7., 8.], [6., 7., 8.], [3., 3., 4.]]);
    }

    #[test]
    fn padded_strided_max_pool_matches_a_direct_loop_with_gradient() {
        let (h, w) = (7, 6);
        let values: Vec<f32> = (0..h * w).map(|i| ((i * 53) % 31) as f32 - 15.0).collect();
        let x = Var::from_vec(values.clone(), (1, 1, h, w), &Device::Cpu).unwrap();
        let spec = PoolSpec::new(3, 2, 1);
        let y = max_pool2d(x.as_tensor(), spec).unwrap();
        let (oh, ow) = (spec.output_len(h).unwrap(), spec.output_len(w).unwrap());
        assert_eq!(y.dims(), &[1, 1, oh, ow]);
        let got = grid(&y);
        let mut expected_grad = vec![0f32; h * w];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best = (f32::NEG_INFINITY, 0);
                for ky in 0..3 {
                    for kx in 0..3 {
                        let (iy, ix) = ((oy * 2 + ky) as isize - 1, (ox * 2 + kx) as isize - 1);
                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                            let i = iy as usize * w + ix as usize;
                            if values[i] > best.0 {
                                best = (values[i], i);
                            }
                        }
                    }
                }
                assert_eq!(got[oy][ox], best.0);
                expected_grad[best.1] += 1.0;
            }
        }
        let grads = y.sum_all().unwrap().backward().unwrap();
        let g: Vec<f32> = grads
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(g, expected_grad);
    }

    #[test]
    fn average_pool_gradient_spreads_evenly() {
        let x = Var::ones((1, 1, 4, 4), DType::F32, &Device::Cpu).unwrap();
        let y = avg_pool2d(x.as_tensor(), PoolSpec::new(2, 2, 0)).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        let g: Vec<f32> = grads
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(g.iter().all(|v| *v == 0.25));
    }
}
