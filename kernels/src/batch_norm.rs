//! Training-mode batch norm (batch statistics) with an optional ReLU, as two passes forward
//! (moments, then normalise) and two backward, where Candle 0.11's BatchNorm::forward_train
//! makes about ten passes forward (transpose copy, mean, subtract, square, mean, divide,
//! scale, shift, transpose back) and its autograd more than that backward.
//!
//! Gradients (per channel, over its n = N H W values, x^ = (x - mean) / sqrt(var + eps),
//! dy already through the ReLU):
//!   dbeta = sum dy, dgamma = sum dy x^, dx = gamma / (n sqrt(var + eps)) (n dy - dbeta - x^ dgamma).

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::buffer::written_by;
use crate::conv2d::{f32_slice, SharedMut};

/// Per-channel mean and biased variance of an (N, C, H, W) tensor, as a (2, C) tensor
/// (no gradient: the statistics' dependence on x is in [`batch_norm_train`]'s backward).
pub fn channel_moments(x: &Tensor) -> Result<Tensor> {
    check(x, "channel_moments")?;
    x.contiguous()?.detach().apply_op1_no_bwd(&Moments)
}

/// `relu(gamma (x - mean) / sqrt(var + eps) + beta)` (or without the ReLU), differentiable
/// in `x` and `affine`.
///
/// # Shapes
/// x (N, C, H, W); affine (2, C): gamma, beta; moments (2, C): `channel_moments(x)` -> like x
pub fn batch_norm_train(
    x: &Tensor,
    affine: &Tensor,
    moments: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<Tensor> {
    check(x, "batch_norm_train")?;
    let c = x.dim(1)?;
    for (name, t) in [("affine", affine), ("moments", moments)] {
        if t.dims() != [2, c] || t.dtype() != DType::F32 {
            bail!(
                "batch_norm_train {name} must be f32 (2, {c}), got {:?} {:?}",
                t.dtype(),
                t.dims()
            );
        }
    }
    let op = BatchNormTrain { eps, relu };
    x.contiguous()?
        .apply_op3(&affine.contiguous()?, &moments.contiguous()?.detach(), op)
}

fn check(x: &Tensor, what: &str) -> Result<()> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 || x.rank() != 4 {
        bail!(
            "perception_kernels::{what} takes a 4-D f32 tensor on the CPU, got {:?} {:?}",
            x.dtype(),
            x.dims()
        );
    }
    Ok(())
}

/// (batch, channels, plane size) of an NCHW layout.
fn nchw(layout: &Layout) -> Result<(usize, usize, usize)> {
    let &[n, c, h, w] = layout.dims() else {
        bail!("batch norm wants a 4-D tensor, got {:?}", layout.dims());
    };
    Ok((n, c, h * w))
}

/// The values of channel `c`, plane by plane.
fn channel<'a>(
    x: &'a [f32],
    n: usize,
    c_count: usize,
    plane: usize,
    c: usize,
) -> impl Iterator<Item = &'a [f32]> {
    (0..n).map(move |i| &x[(i * c_count + c) * plane..][..plane])
}

/// Per-channel sum of an (N, C, H, W) tensor, (C), without a gradient: a conv's bias
/// gradient. (Candle's sum over dims (0, 2, 3) computes an index per element.)
pub fn channel_sums(x: &Tensor) -> Result<Tensor> {
    check(x, "channel_sums")?;
    x.contiguous()?.detach().apply_op1_no_bwd(&Sums)
}

struct Sums;

impl CustomOp1 for Sums {
    fn name(&self) -> &'static str {
        "perception-channel-sums"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c_count, plane) = nchw(layout)?;
        let x = f32_slice(storage, layout)?;
        let sums: Vec<f32> = (0..c_count)
            .into_par_iter()
            .map(|c| {
                let sum: f64 = channel(x, n, c_count, plane, c)
                    .map(|values| values.iter().sum::<f32>() as f64)
                    .sum();
                sum as f32
            })
            .collect();
        Ok((CpuStorage::F32(sums), Shape::from(c_count)))
    }
}

struct Moments;

impl CustomOp1 for Moments {
    fn name(&self) -> &'static str {
        "perception-channel-moments"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c_count, plane) = nchw(layout)?;
        let x = f32_slice(storage, layout)?;
        let count = (n * plane).max(1) as f64;
        let stats: Vec<(f32, f32)> = (0..c_count)
            .into_par_iter()
            .map(|c| {
                // f64 sums: the variance as E[x^2] - mean^2 keeps f32 precision this way.
                let (mut sum, mut sum_sq) = (0f64, 0f64);
                for values in channel(x, n, c_count, plane, c) {
                    let (s, q) = values
                        .iter()
                        .fold((0f32, 0f32), |(s, q), &v| (s + v, q + v * v));
                    sum += s as f64;
                    sum_sq += q as f64;
                }
                let mean = sum / count;
                (mean as f32, (sum_sq / count - mean * mean).max(0.0) as f32)
            })
            .collect();
        let mut out: Vec<f32> = stats.iter().map(|s| s.0).collect();
        out.extend(stats.iter().map(|s| s.1));
        Ok((CpuStorage::F32(out), Shape::from((2, c_count))))
    }
}

struct BatchNormTrain {
    eps: f64,
    relu: bool,
}

/// One channel's normalisation: y = x scale + shift.
#[derive(Clone, Copy)]
struct ChannelMap {
    mean: f32,
    inv_std: f32,
    gamma: f32,
    beta: f32,
}

impl ChannelMap {
    fn all(affine: &[f32], moments: &[f32], eps: f64) -> Vec<Self> {
        let c = affine.len() / 2;
        (0..c)
            .map(|i| Self {
                mean: moments[i],
                inv_std: (1.0 / (moments[c + i] as f64 + eps).sqrt()) as f32,
                gamma: affine[i],
                beta: affine[c + i],
            })
            .collect()
    }

    #[inline]
    fn x_hat(&self, x: f32) -> f32 {
        (x - self.mean) * self.inv_std
    }

    #[inline]
    fn y(&self, x: f32) -> f32 {
        self.x_hat(x) * self.gamma + self.beta
    }
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "perception-batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        s_x: &CpuStorage,
        l_x: &Layout,
        s_a: &CpuStorage,
        l_a: &Layout,
        s_m: &CpuStorage,
        l_m: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, c_count, plane) = nchw(l_x)?;
        let x = f32_slice(s_x, l_x)?;
        let maps = ChannelMap::all(f32_slice(s_a, l_a)?, f32_slice(s_m, l_m)?, self.eps);
        // SAFETY: the planes of `out` and `x` pair up one to one and have the same length,
        // and every output value is written from its input value.
        let out = unsafe {
            written_by(x.len(), |out| {
                out.par_chunks_mut(plane)
                    .zip(x.par_chunks(plane))
                    .enumerate()
                    .for_each(|(i, (dst, src))| {
                        let map = maps[i % c_count];
                        for (d, &v) in dst.iter_mut().zip(src) {
                            let y = map.y(v);
                            d.write(if self.relu { y.max(0.0) } else { y });
                        }
                    });
            })
        };
        Ok((CpuStorage::F32(out), Shape::from(l_x.dims().to_vec())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        affine: &Tensor,
        moments: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let params = Tensor::cat(&[affine, moments], 0)?;
        let grad = grad_res.contiguous()?;
        let grad_x = x.apply_op3_no_bwd(
            &grad,
            &params,
            &BatchNormGrad {
                eps: self.eps,
                relu: self.relu,
            },
        )?;
        let (grad_x, grad_affine) = split_grad(&grad_x, x.elem_count())?;
        Ok((Some(grad_x.reshape(x.shape())?), Some(grad_affine), None))
    }
}

/// The backward's one output, dx followed by (dgamma, dbeta), split.
fn split_grad(packed: &Tensor, count: usize) -> Result<(Tensor, Tensor)> {
    let grad_x = packed.narrow(0, 0, count)?;
    let grad_affine = packed.narrow(0, count, packed.dim(0)? - count)?;
    let c = grad_affine.dim(0)? / 2;
    Ok((grad_x, grad_affine.reshape((2, c))?))
}

/// (x, dy, [gamma; beta; mean; var]) -> [dx (flattened); dgamma; dbeta].
struct BatchNormGrad {
    eps: f64,
    relu: bool,
}

impl CustomOp3 for BatchNormGrad {
    fn name(&self) -> &'static str {
        "perception-batch-norm-train-grad"
    }

    fn cpu_fwd(
        &self,
        s_x: &CpuStorage,
        l_x: &Layout,
        s_dy: &CpuStorage,
        l_dy: &Layout,
        s_p: &CpuStorage,
        l_p: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c_count, plane) = nchw(l_x)?;
        if l_dy.dims() != l_x.dims() || l_p.dims() != [4, c_count] {
            bail!(
                "batch norm gradient shapes {:?} {:?} do not match the input {:?}",
                l_dy.dims(),
                l_p.dims(),
                l_x.dims()
            );
        }
        let (x, dy, p) = (
            f32_slice(s_x, l_x)?,
            f32_slice(s_dy, l_dy)?,
            f32_slice(s_p, l_p)?,
        );
        let maps = ChannelMap::all(&p[..2 * c_count], &p[2 * c_count..], self.eps);
        let total = x.len();
        let mut out = vec![0f32; total + 2 * c_count];
        let dx = SharedMut(out.as_mut_ptr());
        let count = (n * plane) as f32;
        let relu = self.relu;
        // The gradient reaching the normalised value: dy, zero where the ReLU was off.
        let through =
            move |map: &ChannelMap, x: f32, dy: f32| if relu && map.y(x) <= 0.0 { 0.0 } else { dy };
        let affine_grads: Vec<(f32, f32)> = (0..c_count)
            .into_par_iter()
            .map(|c| {
                let map = maps[c];
                let (mut d_beta, mut d_gamma) = (0f64, 0f64);
                for (xs, dys) in
                    channel(x, n, c_count, plane, c).zip(channel(dy, n, c_count, plane, c))
                {
                    let (b, g) = xs.iter().zip(dys).fold((0f32, 0f32), |(b, g), (&x, &dy)| {
                        let dy = through(&map, x, dy);
                        (b + dy, g + dy * map.x_hat(x))
                    });
                    d_beta += b as f64;
                    d_gamma += g as f64;
                }
                let (d_beta, d_gamma) = (d_beta as f32, d_gamma as f32);
                let k = map.gamma * map.inv_std / count;
                for i in 0..n {
                    let offset = (i * c_count + c) * plane;
                    // SAFETY: offset + plane <= total, inside `out`; each task writes the
                    // planes of its own channel only, so no two slices overlap.
                    let dst = unsafe { std::slice::from_raw_parts_mut(dx.at(offset), plane) };
                    for ((d, &x), &dy) in dst
                        .iter_mut()
                        .zip(&x[offset..][..plane])
                        .zip(&dy[offset..][..plane])
                    {
                        let dy = through(&map, x, dy);
                        *d = k * (count * dy - d_beta - map.x_hat(x) * d_gamma);
                    }
                }
                (d_gamma, d_beta)
            })
            .collect();
        for (c, (d_gamma, d_beta)) in affine_grads.into_iter().enumerate() {
            out[total + c] = d_gamma;
            out[total + c_count + c] = d_beta;
        }
        Ok((CpuStorage::F32(out), Shape::from(total + 2 * c_count)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::{max_relative, values};
    use candle_core::{Device, Var};

    /// Candle's training-mode batch norm, written out as its ops.
    fn reference(x: &Tensor, gamma: &Tensor, beta: &Tensor, relu: bool) -> Tensor {
        let mean = x
            .mean_keepdim(0)
            .unwrap()
            .mean_keepdim(2)
            .unwrap()
            .mean_keepdim(3)
            .unwrap();
        let centred = x.broadcast_sub(&mean).unwrap();
        let var = centred
            .sqr()
            .unwrap()
            .mean_keepdim(0)
            .unwrap()
            .mean_keepdim(2)
            .unwrap()
            .mean_keepdim(3)
            .unwrap();
        let y = centred
            .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(&gamma.reshape((1, (), 1, 1)).unwrap())
            .unwrap()
            .broadcast_add(&beta.reshape((1, (), 1, 1)).unwrap())
            .unwrap();
        if relu {
            y.relu().unwrap()
        } else {
            y
        }
    }

    #[test]
    fn forward_and_gradients_match_the_batch_norm_written_as_candle_ops() {
        for (shape, relu) in [
            ([2, 3, 5, 7], true),
            ([1, 17, 4, 4], false),
            ([3, 1, 2, 3], true),
        ] {
            let c = shape[1];
            let x = Var::from_tensor(&(values(&shape, 1) * 3.0).unwrap().affine(1.0, 0.5).unwrap())
                .unwrap();
            let gamma = Var::from_tensor(&values(&[c], 2)).unwrap();
            let beta = Var::from_tensor(&values(&[c], 3)).unwrap();
            let affine = Tensor::stack(&[gamma.as_tensor(), beta.as_tensor()], 0).unwrap();
            let moments = channel_moments(&x).unwrap();
            let ours = batch_norm_train(&x, &affine, &moments, 1e-5, relu).unwrap();
            let theirs = reference(&x, &gamma, &beta, relu);
            assert!(max_relative(&ours, &theirs) < 1e-5, "{shape:?}");
            let probe = values(ours.dims(), 4);
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
            for (name, var) in [("input", &x), ("gamma", &gamma), ("beta", &beta)] {
                let (a, b) = (g1.get(var).unwrap(), g2.get(var).unwrap());
                assert!(
                    max_relative(a, b) < 1e-4,
                    "{name} {shape:?}: {}",
                    max_relative(a, b)
                );
            }
        }
    }

    #[test]
    fn channel_sums_equal_candles_sum_over_batch_and_plane() {
        let x = values(&[2, 5, 3, 4], 7);
        let ours = channel_sums(&x).unwrap();
        let theirs = x.sum((0, 2, 3)).unwrap();
        assert!(max_relative(&ours, &theirs) < 1e-6);
    }

    #[test]
    fn moments_are_the_mean_and_biased_variance_per_channel() {
        let x = Tensor::new(
            &[[[[1f32, 3.0]], [[2.0, 2.0]]], [[[5.0, 7.0]], [[2.0, 2.0]]]],
            &Device::Cpu,
        )
        .unwrap();
        let m: Vec<Vec<f32>> = channel_moments(&x).unwrap().to_vec2().unwrap();
        assert_eq!(m, vec![vec![4.0, 2.0], vec![5.0, 0.0]]);
    }
}
