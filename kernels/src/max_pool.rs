//! 2x2 max pooling with stride 2, one pass per plane, and its exact gradient: the whole
//! window's gradient goes to its first maximum (row-major), as PyTorch's does. (Candle
//! 0.11's own max_pool2d backward is wrong, and reshape + max, the previous workaround,
//! makes two strided reduction passes.)

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::conv2d::f32_slice;

/// # Shapes
/// (N, C, H, W) -> (N, C, H / 2, W / 2); an odd last row or column is dropped, as PyTorch floors.
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 {
        bail!("perception_kernels::max_pool2x2 takes f32 on the CPU");
    }
    x.contiguous()?.apply_op1(MaxPool)
}

struct MaxPool;

fn planes(dims: &[usize]) -> Result<(usize, usize, usize)> {
    let &[n, c, h, w] = dims else {
        bail!("max_pool2x2 wants a 4-D input, got {dims:?}");
    };
    if h < 2 || w < 2 {
        bail!("max_pool2x2 needs an input of at least 2x2, got {h}x{w}");
    }
    Ok((n * c, h, w))
}

/// Index within the plane of the window's first maximum (NaN wins, as in PyTorch).
#[inline]
fn argmax(plane: &[f32], w: usize, oy: usize, ox: usize) -> usize {
    let top = 2 * oy * w + 2 * ox;
    let mut best = top;
    for i in [top + 1, top + w, top + w + 1] {
        if plane[i] > plane[best] || plane[i].is_nan() && !plane[best].is_nan() {
            best = i;
        }
    }
    best
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "perception-max-pool2x2"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (count, h, w) = planes(layout.dims())?;
        let x = f32_slice(storage, layout)?;
        let (oh, ow) = (h / 2, w / 2);
        let mut out = vec![0f32; count * oh * ow];
        out.par_chunks_mut(oh * ow)
            .zip(x.par_chunks(h * w))
            .for_each(|(dst, plane)| {
                for oy in 0..oh {
                    for ox in 0..ow {
                        dst[oy * ow + ox] = plane[argmax(plane, w, oy, ox)];
                    }
                }
            });
        let dims = layout.dims();
        Ok((
            CpuStorage::F32(out),
            Shape::from((dims[0], dims[1], oh, ow)),
        ))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            arg.apply_op2_no_bwd(&grad_res.contiguous()?, &MaxPoolGrad)?,
        ))
    }
}

/// (x, dy) -> dx: each window's gradient onto its first maximum.
struct MaxPoolGrad;

impl CustomOp2 for MaxPoolGrad {
    fn name(&self) -> &'static str {
        "perception-max-pool2x2-grad"
    }

    fn cpu_fwd(
        &self,
        s_x: &CpuStorage,
        l_x: &Layout,
        s_dy: &CpuStorage,
        l_dy: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (count, h, w) = planes(l_x.dims())?;
        let (oh, ow) = (h / 2, w / 2);
        if l_dy.dims().iter().product::<usize>() != count * oh * ow {
            bail!(
                "max_pool2x2 gradient {:?} does not match the input {:?}",
                l_dy.dims(),
                l_x.dims()
            );
        }
        let (x, dy) = (f32_slice(s_x, l_x)?, f32_slice(s_dy, l_dy)?);
        let mut dx = vec![0f32; count * h * w];
        dx.par_chunks_mut(h * w)
            .zip(x.par_chunks(h * w).zip(dy.par_chunks(oh * ow)))
            .for_each(|(dst, (plane, grad))| {
                for oy in 0..oh {
                    for ox in 0..ow {
                        dst[argmax(plane, w, oy, ox)] = grad[oy * ow + ox];
                    }
                }
            });
        Ok((CpuStorage::F32(dx), Shape::from(l_x.dims().to_vec())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::{max_relative, values};
    use candle_core::{Device, Var};

    #[test]
    fn pooling_and_its_gradient_match_reshape_and_max() {
        for (h, w) in [(6, 8), (7, 5), (2, 2)] {
            let x = Var::from_tensor(&values(&[2, 3, h, w], 1)).unwrap();
            let ours = max_pool2x2(&x).unwrap();
            let trimmed = x
                .narrow(2, 0, h / 2 * 2)
                .unwrap()
                .narrow(3, 0, w / 2 * 2)
                .unwrap();
            let theirs = trimmed
                .reshape((2, 3, h / 2, 2, w / 2, 2))
                .unwrap()
                .max(5)
                .unwrap()
                .max(3)
                .unwrap();
            assert_eq!(max_relative(&ours, &theirs), 0.0);
            // Distinct values: no ties, so both gradients are the same one-hot routing.
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
            assert_eq!(max_relative(g1.get(&x).unwrap(), g2.get(&x).unwrap()), 0.0);
        }
    }

    #[test]
    fn a_tied_window_sends_its_gradient_to_the_first_maximum_only() {
        let x = Var::from_tensor(&Tensor::zeros((1, 1, 2, 2), DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        let y = max_pool2x2(&x).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        let dx: Vec<f32> = grads
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(dx, vec![1.0, 0.0, 0.0, 0.0]);
    }
}
