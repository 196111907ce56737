//! The transposed convolution whose kernel equals its stride, with no padding (the U-Net's
//! 2x2 stride-2 up-convolution): its output windows tile the output without overlapping, so
//! the layer is one GEMM `(C_out k k, C_in) x (C_in, H W)` whose rows are then scattered into
//! the windows, bias added on the way.

use std::mem::MaybeUninit;

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use crate::batch_norm::channel_sums;
use crate::buffer::written_by;
use crate::conv2d::{f32_slice, matmul};

/// `conv_transpose2d(x, weight, stride = k) + bias` on the CPU, differentiable in all three.
///
/// # Shapes
/// x (N, C_in, H, W), weight (C_in, C_out, k, k), bias (C_out) -> (N, C_out, k H, k W)
pub fn up_conv2d(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        bail!("perception_kernels::up_conv2d runs on the CPU only");
    }
    for (name, t) in [("input", x), ("weight", weight), ("bias", bias)] {
        if t.dtype() != DType::F32 {
            bail!(
                "perception_kernels::up_conv2d takes f32, its {name} is {:?}",
                t.dtype()
            );
        }
    }
    let (x, weight, bias) = (x.contiguous()?, weight.contiguous()?, bias.contiguous()?);
    x.apply_op3(&weight, &bias, UpConv)
}

#[derive(Clone, Copy, Debug)]
struct Geometry {
    batch: usize,
    c_in: usize,
    height: usize,
    width: usize,
    c_out: usize,
    k: usize,
}

impl Geometry {
    fn new(x: &[usize], w: &[usize]) -> Result<Self> {
        let (&[batch, c_in, height, width], &[w_in, c_out, kh, kw]) = (x, w) else {
            bail!("up_conv2d wants a 4-D input and weight, got {x:?} and {w:?}");
        };
        if w_in != c_in || kh != kw || kh == 0 {
            bail!("up_conv2d weight {w:?} (C_in, C_out, k, k) does not fit the input {x:?}");
        }
        Ok(Self {
            batch,
            c_in,
            height,
            width,
            c_out,
            k: kh,
        })
    }

    fn hw(&self) -> usize {
        self.height * self.width
    }

    /// GEMM rows: one per output channel and window position.
    fn rows(&self) -> usize {
        self.c_out * self.k * self.k
    }

    fn out_plane(&self) -> usize {
        self.hw() * self.k * self.k
    }

    fn out_dims(&self) -> [usize; 4] {
        [
            self.batch,
            self.c_out,
            self.height * self.k,
            self.width * self.k,
        ]
    }
}

fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// Output channel planes from the GEMM rows of one image: row `(co, i, j)`, column `(y, x)`
/// goes to `(co, k y + i, k x + j)`. Writes every value of `out` (C_out k H k W): the k x k
/// window offsets (i, j) cover each output plane exactly once.
fn scatter(rows: &[f32], g: &Geometry, bias: &[f32], out: &mut [MaybeUninit<f32>]) {
    out.par_chunks_mut(g.out_plane())
        .enumerate()
        .for_each(|(co, plane)| {
            let out_w = g.width * g.k;
            for i in 0..g.k {
                for j in 0..g.k {
                    let row = &rows[((co * g.k + i) * g.k + j) * g.hw()..][..g.hw()];
                    for y in 0..g.height {
                        let dst = &mut plane[(g.k * y + i) * out_w + j..];
                        for (x, v) in row[y * g.width..(y + 1) * g.width].iter().enumerate() {
                            dst[g.k * x].write(v + bias[co]);
                        }
                    }
                }
            }
        });
}

/// The inverse reshuffle: one image's output gradient as GEMM rows (C_out k k, H W).
fn gather(dy: &[f32], g: &Geometry) -> Vec<f32> {
    // SAFETY: every row (C_out k k of them) writes its H W values, y by y and x by x.
    unsafe {
        written_by(g.rows() * g.hw(), |rows| {
            rows.par_chunks_mut(g.hw())
                .enumerate()
                .for_each(|(r, row)| {
                    let (co, i, j) = (r / (g.k * g.k), (r / g.k) % g.k, r % g.k);
                    let plane = &dy[co * g.out_plane()..(co + 1) * g.out_plane()];
                    let out_w = g.width * g.k;
                    for y in 0..g.height {
                        let src = &plane[(g.k * y + i) * out_w + j..];
                        let dst = &mut row[y * g.width..(y + 1) * g.width];
                        for (x, v) in dst.iter_mut().enumerate() {
                            v.write(src[g.k * x]);
                        }
                    }
                });
        })
    }
}

struct UpConv;

impl CustomOp3 for UpConv {
    fn name(&self) -> &'static str {
        "perception-up-conv2d"
    }

    fn cpu_fwd(
        &self,
        s_x: &CpuStorage,
        l_x: &Layout,
        s_w: &CpuStorage,
        l_w: &Layout,
        s_b: &CpuStorage,
        l_b: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::new(l_x.dims(), l_w.dims())?;
        let (x, w, b) = (
            f32_slice(s_x, l_x)?,
            f32_slice(s_w, l_w)?,
            f32_slice(s_b, l_b)?,
        );
        if b.len() != g.c_out {
            bail!(
                "up_conv2d bias has {} values for {} output channels",
                b.len(),
                g.c_out
            );
        }
        let image_out = g.c_out * g.out_plane();
        // SAFETY: the scatter writes every value of each image's output.
        let out = unsafe {
            written_by(g.batch * image_out, |out| {
                for (n, out_image) in out.chunks_exact_mut(image_out).enumerate() {
                    let x_image = &x[n * g.c_in * g.hw()..(n + 1) * g.c_in * g.hw()];
                    // rows (C_out k k, HW) = w^T (C_out k k, C_in) x x (C_in, HW).
                    // SAFETY: the GEMM (read_dst false) writes all rows() x hw() values of
                    // `rows`, reading hw() x c_in of `x_image` and c_in x rows() of `w`,
                    // which their lengths hold (checked by Geometry::new).
                    let rows = written_by(g.rows() * g.hw(), |rows| {
                        matmul(
                            g.rows(),
                            g.hw(),
                            g.c_in,
                            (rows.as_mut_ptr().cast(), g.hw(), 1),
                            (w.as_ptr(), 1, g.rows()),
                            (x_image.as_ptr(), g.hw(), 1),
                            false,
                            Parallelism::Rayon(threads()),
                        )
                    });
                    scatter(&rows, &g, b, out_image);
                }
            })
        };
        Ok((CpuStorage::F32(out), Shape::from(g.out_dims().to_vec())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad_res.contiguous()?;
        let grad_b = b.track_op().then(|| channel_sums(&grad)).transpose()?;
        let grad_x = grad.apply_op2_no_bwd(w, &UpConvInputGrad)?;
        let grad_w = x.apply_op2_no_bwd(
            &grad,
            &UpConvWeightGrad {
                weight: w.dims().to_vec(),
            },
        )?;
        Ok((Some(grad_x), Some(grad_w), grad_b))
    }
}

/// `dx = w (C_in, C_out k k) x gather(dy)`.
struct UpConvInputGrad;

impl CustomOp2 for UpConvInputGrad {
    fn name(&self) -> &'static str {
        "perception-up-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        s_dy: &CpuStorage,
        l_dy: &Layout,
        s_w: &CpuStorage,
        l_w: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (w_dims, dy_dims) = (l_w.dims(), l_dy.dims());
        let &[batch, _, out_h, out_w] = dy_dims else {
            bail!("up_conv2d output gradient must be 4-D, got {dy_dims:?}");
        };
        let k = w_dims.get(2).copied().unwrap_or(1).max(1);
        let x_dims = [batch, w_dims[0], out_h / k, out_w / k];
        let g = Geometry::new(&x_dims, w_dims)?;
        if dy_dims != g.out_dims() {
            bail!("up_conv2d output gradient {dy_dims:?} does not match the forward's output");
        }
        let (dy, w) = (f32_slice(s_dy, l_dy)?, f32_slice(s_w, l_w)?);
        // SAFETY: per image, the GEMM (read_dst false) writes all c_in x hw() values of its
        // part of dx, reading c_in x rows() of `w` and rows() x hw() of `rows`, which their
        // lengths hold.
        let dx = unsafe {
            written_by(batch * g.c_in * g.hw(), |dx| {
                for (n, dx_image) in dx.chunks_exact_mut(g.c_in * g.hw()).enumerate() {
                    let rows = gather(&dy[n * g.c_out * g.out_plane()..], &g);
                    matmul(
                        g.c_in,
                        g.hw(),
                        g.rows(),
                        (dx_image.as_mut_ptr().cast(), g.hw(), 1),
                        (w.as_ptr(), g.rows(), 1),
                        (rows.as_ptr(), g.hw(), 1),
                        false,
                        Parallelism::Rayon(threads()),
                    );
                }
            })
        };
        Ok((CpuStorage::F32(dx), Shape::from(x_dims.to_vec())))
    }
}

/// `dw (C_in, C_out k k) = sum over images of x (C_in, HW) x gather(dy)^T`.
struct UpConvWeightGrad {
    weight: Vec<usize>,
}

impl CustomOp2 for UpConvWeightGrad {
    fn name(&self) -> &'static str {
        "perception-up-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s_x: &CpuStorage,
        l_x: &Layout,
        s_dy: &CpuStorage,
        l_dy: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::new(l_x.dims(), &self.weight)?;
        if l_dy.dims() != g.out_dims() {
            bail!(
                "up_conv2d output gradient {:?} does not match the forward's output",
                l_dy.dims()
            );
        }
        let (x, dy) = (f32_slice(s_x, l_x)?, f32_slice(s_dy, l_dy)?);
        let mut dw = vec![0f32; g.c_in * g.rows()];
        for n in 0..g.batch {
            let rows = gather(&dy[n * g.c_out * g.out_plane()..], &g);
            // SAFETY: dw holds c_in x rows() values, image n of `x` c_in x hw() from its
            // start, `rows` rows() x hw(): every index the GEMM touches is inside them.
            unsafe {
                matmul(
                    g.c_in,
                    g.rows(),
                    g.hw(),
                    (dw.as_mut_ptr(), g.rows(), 1),
                    (x[n * g.c_in * g.hw()..].as_ptr(), g.hw(), 1),
                    (rows.as_ptr(), 1, g.hw()),
                    true,
                    Parallelism::Rayon(threads()),
                );
            }
        }
        Ok((CpuStorage::F32(dw), Shape::from(self.weight.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::{max_relative, values};
    use candle_core::Var;

    #[test]
    fn matches_candles_transposed_convolution_forward_and_backward() {
        for (batch, c_in, c_out, h, w, k) in
            [(1, 4, 3, 5, 7, 2), (2, 17, 5, 3, 4, 2), (1, 3, 2, 4, 3, 3)]
        {
            let x = Var::from_tensor(&values(&[batch, c_in, h, w], 1)).unwrap();
            let weight = Var::from_tensor(&values(&[c_in, c_out, k, k], 2)).unwrap();
            let bias = Var::from_tensor(&values(&[c_out], 3)).unwrap();
            let ours = up_conv2d(&x, &weight, &bias).unwrap();
            let theirs = x
                .conv_transpose2d(&weight, 0, 0, k, 1)
                .unwrap()
                .broadcast_add(&bias.reshape((1, (), 1, 1)).unwrap())
                .unwrap();
            assert!(max_relative(&ours, &theirs) < 1e-5);
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
            for (name, var) in [("input", &x), ("weight", &weight), ("bias", &bias)] {
                let (a, b) = (g1.get(var).unwrap(), g2.get(var).unwrap());
                assert!(max_relative(a, b) < 1e-4, "{name}: {}", max_relative(a, b));
            }
        }
    }
}
