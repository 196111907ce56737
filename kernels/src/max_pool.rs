//! Max pooling (any square kernel, stride and padding; padding never wins), one pass per
//! plane, and its exact gradient: the whole window's gradient goes to its first maximum
//! (row-major), as PyTorch's does. (Candle 0.11's own max_pool2d backward is wrong, and the
//! previous workarounds, reshape + max or a maximum over shifted views, make several passes.)

use std::mem::MaybeUninit;

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::buffer::written_by;
use crate::conv2d::f32_slice;

/// # Shapes
/// (N, C, H, W) -> (N, C, H / 2, W / 2); an odd last row or column is dropped, as PyTorch floors.
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    max_pool2d(x, 2, 2, 0)
}

/// # Shapes
/// (N, C, H, W) -> (N, C, H', W') with `H' = (H + 2 padding - kernel) / stride + 1`
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 {
        bail!("perception_kernels::max_pool2d takes f32 on the CPU");
    }
    if kernel == 0 || stride == 0 || 2 * padding > kernel {
        bail!("max_pool2d needs kernel >= 1, stride >= 1 and padding <= kernel / 2, got {kernel}, {stride}, {padding}");
    }
    x.contiguous()?.apply_op1(MaxPool {
        kernel,
        stride,
        padding,
    })
}

#[derive(Clone, Copy)]
struct MaxPool {
    kernel: usize,
    stride: usize,
    padding: usize,
}

/// Planes, their size and the output size.
struct Planes {
    count: usize,
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
}

impl MaxPool {
    fn planes(&self, dims: &[usize]) -> Result<Planes> {
        let &[n, c, h, w] = dims else {
            bail!("max_pool2d wants a 4-D input, got {dims:?}");
        };
        let out = |len: usize| {
            (len + 2 * self.padding)
                .checked_sub(self.kernel)
                .map(|span| span / self.stride + 1)
        };
        let (Some(out_h), Some(out_w)) = (out(h), out(w)) else {
            bail!(
                "max_pool2d window {} (padding {}) larger than the {h}x{w} input",
                self.kernel,
                self.padding
            );
        };
        Ok(Planes {
            count: n * c,
            h,
            w,
            out_h,
            out_w,
        })
    }

    /// Index within the plane of the window's first maximum (NaN wins, as in PyTorch).
    #[inline]
    fn argmax(&self, plane: &[f32], p: &Planes, oy: usize, ox: usize) -> usize {
        let rows = (oy * self.stride).saturating_sub(self.padding)
            ..(oy * self.stride + self.kernel - self.padding).min(p.h);
        let cols = (ox * self.stride).saturating_sub(self.padding)
            ..(ox * self.stride + self.kernel - self.padding).min(p.w);
        let mut best = rows.start * p.w + cols.start;
        for y in rows {
            for i in y * p.w + cols.start..y * p.w + cols.end {
                if plane[i] > plane[best] || plane[i].is_nan() && !plane[best].is_nan() {
                    best = i;
                }
            }
        }
        best
    }

    /// One plane without NaN: the maximum over each window's rows for every column (a
    /// vectorised pass per output row), then over the window's columns.
    fn pool_plane(
        &self,
        plane: &[f32],
        p: &Planes,
        dst: &mut [MaybeUninit<f32>],
        rows_max: &mut Vec<f32>,
    ) {
        rows_max.resize(p.w, 0.0);
        for (oy, dst_row) in dst.chunks_exact_mut(p.out_w).enumerate() {
            let y0 = (oy * self.stride).saturating_sub(self.padding);
            let y1 = (oy * self.stride + self.kernel - self.padding).min(p.h);
            rows_max.copy_from_slice(&plane[y0 * p.w..(y0 + 1) * p.w]);
            for y in y0 + 1..y1 {
                for (m, &v) in rows_max.iter_mut().zip(&plane[y * p.w..(y + 1) * p.w]) {
                    *m = m.max(v);
                }
            }
            for (ox, d) in dst_row.iter_mut().enumerate() {
                let x0 = (ox * self.stride).saturating_sub(self.padding);
                let x1 = (ox * self.stride + self.kernel - self.padding).min(p.w);
                d.write(
                    rows_max[x0 + 1..x1]
                        .iter()
                        .fold(rows_max[x0], |m, &v| m.max(v)),
                );
            }
        }
    }
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "perception-max-pool2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let p = self.planes(layout.dims())?;
        let x = f32_slice(storage, layout)?;
        let (h, w, oh, ow) = (p.h, p.w, p.out_h, p.out_w);
        // SAFETY: output and input planes pair up one to one (p.count of each), and both
        // branches write all oh * ow values of their output plane.
        let out = unsafe {
            written_by(p.count * oh * ow, |out| {
                out.par_chunks_mut(oh * ow)
                    .zip(x.par_chunks(h * w))
                    .for_each_init(Vec::new, |rows_max, (dst, plane)| {
                        // NaN is rare and must win: such planes take the window search.
                        if plane.iter().fold(false, |nan, v| nan | v.is_nan()) {
                            for oy in 0..oh {
                                for ox in 0..ow {
                                    dst[oy * ow + ox].write(plane[self.argmax(plane, &p, oy, ox)]);
                                }
                            }
                        } else {
                            self.pool_plane(plane, &p, dst, rows_max);
                        }
                    });
            })
        };
        let dims = layout.dims();
        Ok((
            CpuStorage::F32(out),
            Shape::from((dims[0], dims[1], oh, ow)),
        ))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad_res.contiguous()?;
        Ok(Some(arg.apply_op2_no_bwd(&grad, &MaxPoolGrad(*self))?))
    }
}

/// (x, dy) -> dx: each window's gradient onto its first maximum (added up where windows
/// overlap).
struct MaxPoolGrad(MaxPool);

impl CustomOp2 for MaxPoolGrad {
    fn name(&self) -> &'static str {
        "perception-max-pool2d-grad"
    }

    fn cpu_fwd(
        &self,
        s_x: &CpuStorage,
        l_x: &Layout,
        s_dy: &CpuStorage,
        l_dy: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let p = self.0.planes(l_x.dims())?;
        let (count, h, w, oh, ow) = (p.count, p.h, p.w, p.out_h, p.out_w);
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
                        dst[self.0.argmax(plane, &p, oy, ox)] += grad[oy * ow + ox];
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
    fn overlapping_padded_windows_match_the_maximum_of_shifted_views() {
        // ResNet's stem pool: 3x3, stride 2, padding 1, on odd and even sizes.
        for (h, w) in [(9, 8), (6, 7)] {
            let x = Var::from_tensor(&values(&[1, 2, h, w], 5)).unwrap();
            let ours = max_pool2d(&x, 3, 2, 1).unwrap();
            let padded = x
                .pad_with_same(2, 1, 1)
                .unwrap()
                .pad_with_same(3, 1, 1)
                .unwrap();
            let (oh, ow) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
            let mut theirs: Option<Tensor> = None;
            for dy in 0..3 {
                for dx in 0..3 {
                    let rows: Vec<u32> = (0..oh).map(|i| (dy + 2 * i) as u32).collect();
                    let cols: Vec<u32> = (0..ow).map(|i| (dx + 2 * i) as u32).collect();
                    let view = padded
                        .index_select(&Tensor::new(rows, &Device::Cpu).unwrap(), 2)
                        .unwrap()
                        .index_select(&Tensor::new(cols, &Device::Cpu).unwrap(), 3)
                        .unwrap();
                    theirs = Some(match theirs {
                        Some(acc) => acc.maximum(&view).unwrap(),
                        None => view,
                    });
                }
            }
            // Edge padding repeats border values, which never exceed the window's own maximum.
            let theirs = theirs.unwrap();
            assert_eq!(max_relative(&ours, &theirs), 0.0);
            let probe = values(ours.dims(), 6);
            let g1 = (&ours * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let dx: Vec<f32> = g1
                .get(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let total: f32 = probe.sum_all().unwrap().to_scalar().unwrap();
            assert!(
                (dx.iter().sum::<f32>() - total).abs() < 1e-4,
                "every window's gradient lands once"
            );
        }
    }

    #[test]
    fn nan_wins_its_windows_and_only_those() {
        // One NaN in the second plane: its windows give NaN (as PyTorch's), the first plane
        // and the other windows their maxima.
        let mut v: Vec<f32> = (0..2 * 5 * 6).map(|i| ((i * 7) % 11) as f32).collect();
        v[30 + 6 + 1] = f32::NAN;
        let x = Tensor::from_vec(v.clone(), (1, 2, 5, 6), &Device::Cpu).unwrap();
        let ours: Vec<f32> = max_pool2d(&x, 3, 2, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (i, &o) in ours.iter().enumerate() {
            let (c, oy, ox) = (i / 9, i % 9 / 3, i % 3);
            let window: Vec<f32> = (0..5)
                .flat_map(|y| (0..6).map(move |x| (y, x)))
                .filter(|&(y, x)| {
                    y + 1 >= 2 * oy && y <= 2 * oy + 1 && x + 1 >= 2 * ox && x <= 2 * ox + 1
                })
                .map(|(y, x)| v[c * 30 + y * 6 + x])
                .collect();
            if window.iter().any(|w| w.is_nan()) {
                assert!(o.is_nan(), "window {i} holds the NaN");
            } else {
                assert_eq!(
                    o,
                    window.iter().copied().fold(f32::MIN, f32::max),
                    "window {i}"
                );
            }
        }
        assert!(ours.iter().filter(|o| o.is_nan()).count() == 4);
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
