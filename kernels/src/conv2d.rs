//! 2-D convolution on the CPU as a Candle custom op (forward, input and weight gradients):
//! im2col into gemm, with the Winograd and dot-product paths chosen per layer; also, for now, the
//! crate's shared helpers (`SharedMut`, `f32_slice`, `matmul`, `Epilogue`).

use std::mem::MaybeUninit;

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use gemm::Parallelism;

use crate::batch_norm::channel_sums;
use crate::buffer::written_by;
use crate::dot;
use crate::winograd::{conv3x3, Winograd};
use rayon::prelude::*;

/// Stride and zero padding of a convolution, the same along both axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: usize,
    pub padding: usize,
}

/// `relu(conv(x, weight) + bias)` (or without the ReLU) on the CPU, differentiable in all
/// three arguments.
///
/// # Shapes
/// x (N, C_in, H, W), weight (C_out, C_in, kH, kW), bias (C_out) -> (N, C_out, H', W') with
/// `H' = (H + 2 padding - kH) / stride + 1`.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    params: Conv2dParams,
    relu: bool,
) -> Result<Tensor> {
    conv2d_with(x, weight, bias, params, relu, Algorithm::Auto)
}

/// `relu(scale * conv(x, weight) + bias)` per output channel (or without the ReLU): a
/// convolution followed by an inference-mode batch norm, without folding the batch norm into
/// the weights (a pass over all of them per call, as long as the convolution itself for a
/// deep layer at batch 1). Differentiable in all four arguments.
///
/// # Shapes
/// x (N, C_in, H, W), weight (C_out, C_in, kH, kW), scale and bias (C_out) -> (N, C_out, H', W')
pub fn conv2d_affine(
    x: &Tensor,
    weight: &Tensor,
    scale: &Tensor,
    bias: &Tensor,
    params: Conv2dParams,
    relu: bool,
) -> Result<Tensor> {
    if scale.dims() != bias.dims() {
        bail!(
            "conv2d_affine scale {:?} and bias {:?} differ in shape",
            scale.dims(),
            bias.dims()
        );
    }
    let affine = Tensor::stack(&[scale, bias], 0)?;
    run(x, weight, &affine, params, relu, true, Algorithm::Auto)
}

pub(crate) fn conv2d_with(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    params: Conv2dParams,
    relu: bool,
    algorithm: Algorithm,
) -> Result<Tensor> {
    run(x, weight, bias, params, relu, false, algorithm)
}

/// The op on contiguous f32 CPU tensors; `third` is the bias, or (2, C_out) scales and
/// biases when `scaled`.
fn run(
    x: &Tensor,
    weight: &Tensor,
    third: &Tensor,
    params: Conv2dParams,
    relu: bool,
    scaled: bool,
    algorithm: Algorithm,
) -> Result<Tensor> {
    if !x.device().is_cpu() {
        bail!("perception_kernels::conv2d runs on the CPU only");
    }
    for (name, t) in [("input", x), ("weight", weight), ("bias", third)] {
        if t.dtype() != DType::F32 {
            bail!(
                "perception_kernels::conv2d takes f32, its {name} is {:?}",
                t.dtype()
            );
        }
    }
    let (x, weight, third) = (x.contiguous()?, weight.contiguous()?, third.contiguous()?);
    // Records the backward only when a gradient can flow (Candle checks the arguments).
    x.apply_op3(
        &weight,
        &third,
        Conv2dOp {
            params,
            relu,
            scaled,
            algorithm,
        },
    )
}

/// How the forward pass multiplies: `Auto` takes Winograd F(2x2, 3x3) for 3x3 stride-1
/// kernels with enough channels and output tiles for its GEMMs, dot products along K for
/// outputs of few positions (where the CPU has AVX2 + FMA), im2col into `gemm` otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))] // The tests pick each path; the ops take Auto.
pub(crate) enum Algorithm {
    Auto,
    Im2col,
    Winograd,
    Dot,
}

/// Output positions per image up to which the dot-product kernel beats packing the weights
/// for `gemm`. Measured (2 threads, AVX2, Zen 3), the GEMM alone: 256 x 20 x 2304 69 against
/// 48 GFLOP/s, 64 x 300 x 576 72 against 62, 128 x 80 x 1152 64 against 69; whole networks
/// with 0 / 128 / 320 / 1200: GQ-CNN 1.83 / 1.83 / 1.24 / 3.05 ms, PoseNet and U-Net best at
/// 320 within the noise.
const DOT_MAX_POSITIONS: usize = 320;

/// Channels (in and out) from which Winograd's 16 GEMMs of depth C_in beat one im2col GEMM
/// of depth 9 C_in; below, the transforms cost more than the multiplications they save.
const WINOGRAD_MIN_CHANNELS: usize = 8;

/// Output tiles (2x2) per channel from which Winograd pays: its 16 transformed weight
/// matrices are read once per block of tiles, so deep layers on small maps (PoseNet's
/// layer4: 512 channels, 20 tiles) stay with im2col. Measured on the shipped networks
/// (2 threads, AVX-512): U-Net 160x120 6.8 -> 4.8 ms, 320x240 52 -> 47 ms; PoseNet's deep
/// layers 2-4x slower with Winograd, hence this bound.
const WINOGRAD_TILES_PER_CHANNEL: usize = 2;

/// Sizes of one convolution.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    batch: usize,
    c_in: usize,
    height: usize,
    width: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    padding: usize,
    out_h: usize,
    out_w: usize,
}

impl Geometry {
    fn new(x: &[usize], w: &[usize], params: Conv2dParams) -> Result<Self> {
        let (&[batch, c_in, height, width], &[c_out, w_in, kh, kw]) = (x, w) else {
            bail!("conv2d wants a 4-D input and weight, got {x:?} and {w:?}");
        };
        if w_in != c_in {
            bail!("conv2d weight {w:?} expects {w_in} input channels, the input {x:?} has {c_in}");
        }
        let stride = params.stride;
        if stride == 0 || kh == 0 || kw == 0 {
            bail!("conv2d needs a stride and kernel of at least 1");
        }
        let span = |n: usize, k: usize| (n + 2 * params.padding).checked_sub(k);
        let (Some(span_h), Some(span_w)) = (span(height, kh), span(width, kw)) else {
            bail!(
                "conv2d kernel {kh}x{kw} larger than the padded input {height}x{width} (padding {})",
                params.padding
            );
        };
        Ok(Self {
            batch,
            c_in,
            height,
            width,
            c_out,
            kh,
            kw,
            stride,
            padding: params.padding,
            out_h: span_h / stride + 1,
            out_w: span_w / stride + 1,
        })
    }

    /// Rows of the column matrix: one per input channel and kernel tap.
    fn k(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    /// Output positions per image: the column matrix's width.
    fn p(&self) -> usize {
        self.out_h * self.out_w
    }

    fn plane(&self) -> usize {
        self.height * self.width
    }

    /// A 1x1 convolution without stride or padding reads the input as its own column matrix.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.padding == 0
    }

    /// Output columns per tile: a column tile of about 256 KB, so it stays in L2 between
    /// im2col and the GEMM, but at least 256 columns, so the GEMM's packing of the weights
    /// is spread over enough work (on this 2-core Xeon 64K floats with 256 columns measured
    /// best, within the noise of 16K..1M floats and 64..512 columns); at least one tile per
    /// thread when the image allows.
    fn tiles(&self) -> Vec<(usize, usize)> {
        let p = self.p();
        let threads = rayon::current_num_threads().max(1);
        let by_cache = ((1 << 16) / self.k().max(1)).max(256);
        let by_threads = p.div_ceil(threads).max(64);
        let width = by_cache.min(by_threads);
        (0..p)
            .step_by(width)
            .map(|p0| (p0, (p0 + width).min(p)))
            .collect()
    }

    /// Input row and column read by output (oy, ox) through tap (ki, kj), if not padding.
    #[inline]
    fn source(&self, o: usize, k: usize, n: usize) -> Option<usize> {
        (o * self.stride + k)
            .checked_sub(self.padding)
            .filter(|&i| i < n)
    }
}

/// The input slice of a contiguous f32 storage.
pub(crate) fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        bail!("perception_kernels::conv2d takes f32 tensors");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("perception_kernels::conv2d takes contiguous tensors");
    };
    Ok(&data[start..end])
}

/// A pointer that tiles writing disjoint parts of one buffer may share.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub(crate) *mut f32);
// SAFETY: a SharedMut only carries the address; every dereference is in an unsafe block of
// its own whose SAFETY note says why the threads' writes do not overlap.
unsafe impl Send for SharedMut {}
// SAFETY: as for Send: sharing the address is harmless, each write through it is justified
// where it happens.
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// Through a method, so closures capture the whole (Sync) wrapper, not the raw field.
    /// `offset` must stay within the buffer the pointer came from.
    pub(crate) fn at(&self, offset: usize) -> *mut f32 {
        // wrapping_add: computing the address needs no unsafe; the writes that use it are
        // bounds-argued at their own unsafe blocks.
        self.0.wrapping_add(offset)
    }
}

/// Output columns `ox0..ox1` of one output row, split by tap column `kj` into those that read
/// the input (`lo..hi`) and those that read padding (before `lo`, from `hi`).
#[inline]
fn valid_columns(g: &Geometry, kj: usize, ox0: usize, ox1: usize) -> (usize, usize) {
    // ox reads input column ox * stride + kj - padding, valid in 0..width.
    let first = g.padding.saturating_sub(kj).div_ceil(g.stride);
    let end = (g.width + g.padding)
        .checked_sub(kj)
        .map_or(0, |n| n.div_ceil(g.stride));
    let lo = first.clamp(ox0, ox1);
    let hi = end.clamp(lo, ox1);
    (lo, hi)
}

/// Columns `p0..p1` of image `x`'s column matrix into `col` (K rows of `p1 - p0`).
fn im2col(x: &[f32], g: &Geometry, p0: usize, p1: usize, col: &mut [f32]) {
    let t = p1 - p0;
    for (r, row) in col.chunks_exact_mut(t).enumerate().take(g.k()) {
        let (c, tap) = (r / (g.kh * g.kw), r % (g.kh * g.kw));
        let (ki, kj) = (tap / g.kw, tap % g.kw);
        let plane = &x[c * g.plane()..(c + 1) * g.plane()];
        let mut p = p0;
        while p < p1 {
            let (oy, ox0) = (p / g.out_w, p % g.out_w);
            let ox1 = g.out_w.min(ox0 + (p1 - p));
            let out = &mut row[p - p0..p - p0 + (ox1 - ox0)];
            match g.source(oy, ki, g.height) {
                None => out.fill(0.0),
                Some(iy) => {
                    let src = &plane[iy * g.width..(iy + 1) * g.width];
                    let (lo, hi) = valid_columns(g, kj, ox0, ox1);
                    out[..lo - ox0].fill(0.0);
                    out[hi - ox0..].fill(0.0);
                    if lo == hi {
                        p += ox1 - ox0;
                        continue;
                    }
                    let first = lo * g.stride + kj - g.padding;
                    let dst = &mut out[lo - ox0..hi - ox0];
                    match g.stride {
                        1 => dst.copy_from_slice(&src[first..first + dst.len()]),
                        2 => gather::<2>(dst, &src[first..]),
                        _ => {
                            for (v, s) in dst.iter_mut().zip(src[first..].iter().step_by(g.stride))
                            {
                                *v = *s;
                            }
                        }
                    }
                }
            }
            p += ox1 - ox0;
        }
    }
}

/// Image `x`'s column matrix transposed into `rows`: one row of K per output position
/// (`rows[p * K + (c * kH + ki) * kW + kj]`, the order of a weight row), zero where a tap
/// reads padding.
fn im2row(x: &[f32], g: &Geometry, rows: &mut [MaybeUninit<f32>]) {
    let taps = g.kh * g.kw;
    for (p, row) in rows.chunks_exact_mut(g.k()).enumerate().take(g.p()) {
        let (oy, ox) = (p / g.out_w, p % g.out_w);
        for ki in 0..g.kh {
            let Some(iy) = g.source(oy, ki, g.height) else {
                for c in 0..g.c_in {
                    row[c * taps + ki * g.kw..][..g.kw].fill(MaybeUninit::new(0.0));
                }
                continue;
            };
            for kj in 0..g.kw {
                match g.source(ox, kj, g.width) {
                    None => (0..g.c_in).for_each(|c| {
                        row[c * taps + ki * g.kw + kj].write(0.0);
                    }),
                    Some(ix) => {
                        let at = iy * g.width + ix;
                        for c in 0..g.c_in {
                            row[c * taps + ki * g.kw + kj].write(x[c * g.plane() + at]);
                        }
                    }
                }
            }
        }
    }
}

/// `dst[i] = src[i * S]`: every S-th value, with the stride known to the compiler so the
/// loop unrolls (a ResNet stem's 7x7 stride-2 im2col of a 160x120 image: 0.96 -> 0.36 ms).
#[inline]
fn gather<const S: usize>(dst: &mut [f32], src: &[f32]) {
    let Some(last) = dst.len().checked_sub(1) else {
        return;
    };
    let src = &src[..last * S + 1];
    for (i, v) in dst.iter_mut().enumerate() {
        // SAFETY: i * S <= last * S, inside the slice just taken (which checked its bounds).
        *v = unsafe { *src.get_unchecked(i * S) };
    }
}

/// Adds columns `p0..p1` of a column-matrix gradient back onto image `dx` (col2im).
fn col2im_add(col: &[f32], g: &Geometry, p0: usize, p1: usize, dx: &mut [f32]) {
    let t = p1 - p0;
    for (r, row) in col.chunks_exact(t).enumerate().take(g.k()) {
        let (c, tap) = (r / (g.kh * g.kw), r % (g.kh * g.kw));
        let (ki, kj) = (tap / g.kw, tap % g.kw);
        let plane = &mut dx[c * g.plane()..(c + 1) * g.plane()];
        let mut p = p0;
        while p < p1 {
            let (oy, ox0) = (p / g.out_w, p % g.out_w);
            let ox1 = g.out_w.min(ox0 + (p1 - p));
            if let Some(iy) = g.source(oy, ki, g.height) {
                let dst = &mut plane[iy * g.width..(iy + 1) * g.width];
                let (lo, hi) = valid_columns(g, kj, ox0, ox1);
                if lo == hi {
                    p += ox1 - ox0;
                    continue;
                }
                let first = lo * g.stride + kj - g.padding;
                let src = &row[p - p0 + (lo - ox0)..p - p0 + (hi - ox0)];
                if g.stride == 1 {
                    for (d, v) in dst[first..first + src.len()].iter_mut().zip(src) {
                        *d += v;
                    }
                } else {
                    for (d, v) in dst[first..].iter_mut().step_by(g.stride).zip(src) {
                        *d += v;
                    }
                }
            }
            p += ox1 - ox0;
        }
    }
}

/// `dst (m x n) = lhs (m x k) * rhs (k x n)` (or `+=` when `accumulate`), each operand given by
/// its pointer, row stride and column stride.
///
/// # Safety
/// Every element the strides address (m x k of `lhs`, k x n of `rhs`, m x n of `dst`) must lie
/// inside its allocation, `lhs` and `rhs` initialised, `dst` initialised when `accumulate`,
/// and no other thread may access `dst`'s elements meanwhile. Without `accumulate` every
/// element of `dst` is written (gemm's `read_dst` is false), so `dst` may be uninitialised.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: (*mut f32, usize, usize),
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
    accumulate: bool,
    parallelism: Parallelism,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst.0,
        dst.2 as isize,
        dst.1 as isize,
        accumulate,
        lhs.0,
        lhs.2 as isize,
        lhs.1 as isize,
        rhs.0,
        rhs.2 as isize,
        rhs.1 as isize,
        if accumulate { 1.0 } else { 0.0 },
        1.0,
        false,
        false,
        false,
        parallelism,
    )
}

/// GEMM parallelism for one call: the tiles already spread over the threads when there are
/// enough of them; otherwise the GEMM itself does.
fn inner_parallelism(tiles: usize) -> Parallelism {
    let threads = rayon::current_num_threads().max(1);
    if tiles >= threads {
        Parallelism::None
    } else {
        Parallelism::Rayon(threads)
    }
}

/// What happens to each output channel's sums as they are written: `relu?(scale * v + bias)`.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    pub scale: Option<&'a [f32]>,
    pub bias: &'a [f32],
    pub relu: bool,
}

impl Epilogue<'_> {
    #[inline(always)]
    pub(crate) fn apply(&self, channel: usize, v: f32) -> f32 {
        let v = match self.scale {
            Some(scale) => v * scale[channel] + self.bias[channel],
            None => v + self.bias[channel],
        };
        if self.relu {
            v.max(0.0)
        } else {
            v
        }
    }
}

/// `epilogue(conv(x, w))` for the sizes `g`, by `algorithm`.
fn forward(
    g: &Geometry,
    x: &[f32],
    w: &[f32],
    epilogue: Epilogue,
    algorithm: Algorithm,
) -> Vec<f32> {
    let (k, p) = (g.k(), g.p());
    // SAFETY: each path writes all batch * c_out * p outputs: every Winograd tile its outputs,
    // the dot products every (row, position) of each image, and the GEMM path every column
    // tile of each image (the tiles cover 0..p) in all c_out rows.
    unsafe {
        written_by(g.batch * g.c_out * p, |out| {
            if algorithm.winograd(g) {
                let sizes = Winograd {
                    batch: g.batch,
                    c_in: g.c_in,
                    c_out: g.c_out,
                    height: g.height,
                    width: g.width,
                    padding: g.padding,
                    out_h: g.out_h,
                    out_w: g.out_w,
                };
                conv3x3(&sizes, x, w, epilogue, out);
                return;
            }
            if algorithm.dot(g) {
                for n in 0..g.batch {
                    let image = &x[n * g.c_in * g.plane()..(n + 1) * g.c_in * g.plane()];
                    // SAFETY: im2row writes all p x k values.
                    let rows = written_by(p * k, |rows| im2row(image, g, rows));
                    let out_image = &mut out[n * g.c_out * p..(n + 1) * g.c_out * p];
                    dot::gemm_rows_by_rows(g.c_out, p, k, w, &rows, epilogue, out_image);
                }
                return;
            }
            let tiles = g.tiles();
            let parallelism = inner_parallelism(tiles.len());
            let out_ptr = SharedMut(out.as_mut_ptr().cast());
            for n in 0..g.batch {
                let image = &x[n * g.c_in * g.plane()..(n + 1) * g.c_in * g.plane()];
                let out_image = n * g.c_out * p;
                tiles.par_iter().for_each_init(Vec::new, |col, &(p0, p1)| {
                    let t = p1 - p0;
                    let rhs = if g.is_pointwise() {
                        (image[p0..].as_ptr(), p, 1)
                    } else {
                        col.resize(k * t, 0.0);
                        im2col(image, g, p0, p1, col);
                        (col.as_ptr(), t, 1)
                    };
                    let dst = out_ptr.at(out_image + p0);
                    // SAFETY: columns p0..p1 of this image's c_out x p output, row stride p,
                    // lie inside `out`; tiles are disjoint column ranges, so no two threads
                    // write the same element; w holds c_out x k, rhs k x t.
                    matmul(
                        g.c_out,
                        t,
                        k,
                        (dst, p, 1),
                        (w.as_ptr(), k, 1),
                        rhs,
                        false,
                        parallelism,
                    );
                    for co in 0..g.c_out {
                        // SAFETY: the same tile's t columns of row co, which the GEMM just
                        // initialised and only this thread touches.
                        let row = std::slice::from_raw_parts_mut(dst.add(co * p), t);
                        row.iter_mut().for_each(|v| *v = epilogue.apply(co, *v));
                    }
                });
            }
        })
    }
}

/// relu(conv(x, w) + b), or relu(scale * conv(x, w) + b) when `scaled`: the forward op, and
/// the node of the autograd graph.
#[derive(Clone, Copy)]
struct Conv2dOp {
    params: Conv2dParams,
    relu: bool,
    /// The third argument holds scales and biases, (2, C_out), rather than biases.
    scaled: bool,
    algorithm: Algorithm,
}

impl Algorithm {
    fn dot(self, g: &Geometry) -> bool {
        match self {
            Algorithm::Dot => dot::available(),
            Algorithm::Auto => dot::available() && g.p() <= DOT_MAX_POSITIONS,
            Algorithm::Im2col | Algorithm::Winograd => false,
        }
    }

    fn winograd(self, g: &Geometry) -> bool {
        let fits = g.kh == 3 && g.kw == 3 && g.stride == 1;
        match self {
            Algorithm::Im2col | Algorithm::Dot => false,
            Algorithm::Winograd => fits,
            Algorithm::Auto => {
                let channels = g.c_in.min(g.c_out);
                let tiles = g.out_h.div_ceil(2) * g.out_w.div_ceil(2);
                fits && channels >= WINOGRAD_MIN_CHANNELS
                    && tiles >= WINOGRAD_TILES_PER_CHANNEL * g.c_in.max(g.c_out)
            }
        }
    }
}

impl CustomOp3 for Conv2dOp {
    fn name(&self) -> &'static str {
        "perception-conv2d"
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
        let g = Geometry::new(l_x.dims(), l_w.dims(), self.params)?;
        let (x, w, b) = (
            f32_slice(s_x, l_x)?,
            f32_slice(s_w, l_w)?,
            f32_slice(s_b, l_b)?,
        );
        let per_channel = if self.scaled { 2 } else { 1 };
        if b.len() != per_channel * g.c_out {
            bail!(
                "conv2d {} has {} values for {} output channels",
                if self.scaled {
                    "scale and bias"
                } else {
                    "bias"
                },
                b.len(),
                g.c_out
            );
        }
        let (scale, bias) = if self.scaled {
            let (scale, bias) = b.split_at(g.c_out);
            (Some(scale), bias)
        } else {
            (None, b)
        };
        let epilogue = Epilogue {
            scale,
            bias,
            relu: self.relu,
        };
        let out = forward(&g, x, w, epilogue, self.algorithm);
        let shape = Shape::from((g.batch, g.c_out, g.out_h, g.out_w));
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // Through the ReLU: the gradient passes where the output is positive (zero at 0, as
        // PyTorch's).
        let grad = if self.relu {
            (grad_res * res.gt(0f32)?.to_dtype(DType::F32)?)?
        } else {
            grad_res.clone()
        }
        .contiguous()?;
        let (grad, grad_b) = if self.scaled {
            // y = scale * conv + bias: the scales' gradient needs the convolution itself,
            // computed again (an inference-mode backward, rare).
            let scale = b.get(0)?;
            let grad_affine = if b.track_op() {
                let zeros = scale.zeros_like()?;
                let conv = x.apply_op3_no_bwd(
                    w,
                    &zeros,
                    &Conv2dOp {
                        relu: false,
                        scaled: false,
                        ..*self
                    },
                )?;
                let grad_scale = channel_sums(&(&grad * conv)?)?;
                Some(Tensor::stack(&[grad_scale, channel_sums(&grad)?], 0)?)
            } else {
                None
            };
            let scale = scale.reshape((1, (), 1, 1))?;
            (grad.broadcast_mul(&scale)?.contiguous()?, grad_affine)
        } else {
            // A constant bias (zeros standing in for none) needs no gradient.
            let grad_b = b.track_op().then(|| channel_sums(&grad)).transpose()?;
            (grad, grad_b)
        };
        let (_, _, height, width) = x.dims4()?;
        let grad_x = grad.apply_op2_no_bwd(
            w,
            &InputGrad {
                params: self.params,
                height,
                width,
            },
        )?;
        let grad_w = x.apply_op2_no_bwd(
            &grad,
            &WeightGrad {
                params: self.params,
                kernel: w.dims4()?,
            },
        )?;
        Ok((Some(grad_x), Some(grad_w), grad_b))
    }
}

/// The input gradient: `dx = col2im(w^T * dy)`.
struct InputGrad {
    params: Conv2dParams,
    height: usize,
    width: usize,
}

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "perception-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        s_dy: &CpuStorage,
        l_dy: &Layout,
        s_w: &CpuStorage,
        l_w: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let &[batch, _, _, _] = l_dy.dims() else {
            bail!("conv2d output gradient must be 4-D, got {:?}", l_dy.dims());
        };
        let w_dims = l_w.dims();
        let x_dims = [batch, w_dims[1], self.height, self.width];
        let g = Geometry::new(&x_dims, w_dims, self.params)?;
        if l_dy.dims() != [batch, g.c_out, g.out_h, g.out_w] {
            bail!(
                "conv2d output gradient {:?} does not match the forward's output",
                l_dy.dims()
            );
        }
        let (dy, w) = (f32_slice(s_dy, l_dy)?, f32_slice(s_w, l_w)?);
        if g.stride == 1 && g.kh == g.kw && g.padding < g.kh && !g.is_pointwise() {
            // Stride 1: dx is the convolution of dy with every kernel rotated by 180 degrees
            // and the channel axes swapped, padded by k - 1 - padding, so the forward's fast
            // paths (Winograd, dot products) serve the backward too.
            let transposed = Geometry::new(
                &[batch, g.c_out, g.out_h, g.out_w],
                &[g.c_in, g.c_out, g.kh, g.kw],
                Conv2dParams {
                    stride: 1,
                    padding: g.kh - 1 - g.padding,
                },
            )?;
            debug_assert_eq!((transposed.out_h, transposed.out_w), (g.height, g.width));
            let rotated = rotate_and_transpose(w, &g);
            let zeros = vec![0f32; g.c_in];
            let epilogue = Epilogue {
                scale: None,
                bias: &zeros,
                relu: false,
            };
            let dx = forward(&transposed, dy, &rotated, epilogue, Algorithm::Auto);
            return Ok((CpuStorage::F32(dx), Shape::from(x_dims.to_vec())));
        }
        let (k, p) = (g.k(), g.p());
        let image_len = g.c_in * g.plane();
        let mut dx = vec![0f32; batch * image_len];
        let tiles = g.tiles();
        // w^T: (K x C_out) read from the row-major (C_out x K) weight.
        let w_t = || (w.as_ptr(), 1, k);
        for (n, dx_image) in dx.chunks_exact_mut(image_len).enumerate() {
            let dy_image = &dy[n * g.c_out * p..(n + 1) * g.c_out * p];
            if g.is_pointwise() {
                let threads = rayon::current_num_threads().max(1);
                // SAFETY: dx_image holds k x p values (k = c_in for a 1x1 kernel), w c_out x k,
                // dy_image c_out x p; one GEMM at a time writes dx_image.
                unsafe {
                    matmul(
                        k,
                        p,
                        g.c_out,
                        (dx_image.as_mut_ptr(), p, 1),
                        w_t(),
                        (dy_image.as_ptr(), p, 1),
                        false,
                        Parallelism::Rayon(threads),
                    );
                }
                continue;
            }
            // Neighbouring tiles add onto the same input rows: each thread group sums into its
            // own image buffer, the buffers are added at the end.
            let groups = rayon::current_num_threads().clamp(1, tiles.len());
            let per_group = tiles.len().div_ceil(groups);
            let parallelism = inner_parallelism(groups);
            let partial: Vec<Vec<f32>> = tiles
                .par_chunks(per_group)
                .map(|group| {
                    let mut acc = vec![0f32; image_len];
                    let mut col = Vec::new();
                    for &(p0, p1) in group {
                        let t = p1 - p0;
                        col.resize(k * t, 0.0);
                        // SAFETY: col was just sized to k x t, this thread's own; w holds
                        // c_out x k, and columns p0..p1 of dy_image (row stride p) c_out x t.
                        unsafe {
                            matmul(
                                k,
                                t,
                                g.c_out,
                                (col.as_mut_ptr(), t, 1),
                                w_t(),
                                (dy_image[p0..].as_ptr(), p, 1),
                                false,
                                parallelism,
                            );
                        }
                        col2im_add(&col, &g, p0, p1, &mut acc);
                    }
                    acc
                })
                .collect();
            for acc in partial {
                dx_image.iter_mut().zip(&acc).for_each(|(d, a)| *d += a);
            }
        }
        Ok((CpuStorage::F32(dx), Shape::from(x_dims.to_vec())))
    }
}

/// `w'[ci][co][i][j] = w[co][ci][kh - 1 - i][kw - 1 - j]`: the kernels of the transposed
/// convolution as a forward one.
fn rotate_and_transpose(w: &[f32], g: &Geometry) -> Vec<f32> {
    let taps = g.kh * g.kw;
    // SAFETY: (co, ci) runs over all c_out x c_in kernels, each writing its taps values, and
    // w.len() = c_out x c_in x taps.
    unsafe {
        written_by(w.len(), |rotated| {
            for co in 0..g.c_out {
                for ci in 0..g.c_in {
                    let src = &w[(co * g.c_in + ci) * taps..][..taps];
                    let dst = &mut rotated[(ci * g.c_out + co) * taps..][..taps];
                    for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                        d.write(*s);
                    }
                }
            }
        })
    }
}

/// The weight gradient: `dw = sum over images of dy * im2col(x)^T`.
struct WeightGrad {
    params: Conv2dParams,
    kernel: (usize, usize, usize, usize),
}

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "perception-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s_x: &CpuStorage,
        l_x: &Layout,
        s_dy: &CpuStorage,
        l_dy: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (c_out, c_in, kh, kw) = self.kernel;
        let w_dims = [c_out, c_in, kh, kw];
        let g = Geometry::new(l_x.dims(), &w_dims, self.params)?;
        if l_dy.dims() != [g.batch, g.c_out, g.out_h, g.out_w] {
            bail!(
                "conv2d output gradient {:?} does not match the forward's output",
                l_dy.dims()
            );
        }
        let (x, dy) = (f32_slice(s_x, l_x)?, f32_slice(s_dy, l_dy)?);
        let (k, p) = (g.k(), g.p());
        let tiles = g.tiles();
        let groups = rayon::current_num_threads().clamp(1, tiles.len());
        let per_group = tiles.len().div_ceil(groups);
        let parallelism = inner_parallelism(groups);
        let partial: Vec<Vec<f32>> = tiles
            .par_chunks(per_group)
            .map(|group| {
                let mut acc = vec![0f32; c_out * k];
                let mut col = Vec::new();
                for n in 0..g.batch {
                    let image = &x[n * g.c_in * g.plane()..(n + 1) * g.c_in * g.plane()];
                    let dy_image = &dy[n * c_out * p..(n + 1) * c_out * p];
                    for &(p0, p1) in group {
                        let t = p1 - p0;
                        // x's columns, transposed: (T x K).
                        let cols_t = if g.is_pointwise() {
                            (image[p0..].as_ptr(), 1, p)
                        } else {
                            col.resize(k * t, 0.0);
                            im2col(image, &g, p0, p1, &mut col);
                            (col.as_ptr(), 1, t)
                        };
                        // SAFETY: acc (this thread's own) holds c_out x k, initialised (the
                        // GEMM accumulates); dy_image's columns p0..p1 (row stride p) c_out x t;
                        // cols_t t x k inside `image` or `col`.
                        unsafe {
                            matmul(
                                c_out,
                                k,
                                t,
                                (acc.as_mut_ptr(), k, 1),
                                (dy_image[p0..].as_ptr(), p, 1),
                                cols_t,
                                true,
                                parallelism,
                            );
                        }
                    }
                }
                acc
            })
            .collect();
        let mut dw = vec![0f32; c_out * k];
        for acc in partial {
            dw.iter_mut().zip(&acc).for_each(|(d, a)| *d += a);
        }
        Ok((CpuStorage::F32(dw), Shape::from(w_dims.to_vec())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::{max_relative, values};
    use candle_core::Var;

    /// Candle's own ops: the reference every case is held to, forward and backward.
    fn reference(x: &Tensor, w: &Tensor, b: &Tensor, p: Conv2dParams, relu: bool) -> Tensor {
        let y = x.conv2d(w, p.padding, p.stride, 1, 1).unwrap();
        let y = y.broadcast_add(&b.reshape((1, (), 1, 1)).unwrap()).unwrap();
        if relu {
            y.relu().unwrap()
        } else {
            y
        }
    }

    /// Forward and all three gradients against Candle's reference, for one geometry.
    fn check(
        batch: usize,
        c_in: usize,
        c_out: usize,
        hw: (usize, usize),
        k: usize,
        p: Conv2dParams,
        relu: bool,
    ) {
        check_with(batch, c_in, c_out, hw, k, p, relu, Algorithm::Auto);
    }

    #[allow(clippy::too_many_arguments)]
    fn check_with(
        batch: usize,
        c_in: usize,
        c_out: usize,
        hw: (usize, usize),
        k: usize,
        p: Conv2dParams,
        relu: bool,
        algorithm: Algorithm,
    ) {
        let x = Var::from_tensor(&values(&[batch, c_in, hw.0, hw.1], 1)).unwrap();
        let w = Var::from_tensor(&values(&[c_out, c_in, k, k], 2)).unwrap();
        let b = Var::from_tensor(&values(&[c_out], 3)).unwrap();
        let ours = conv2d_with(&x, &w, &b, p, relu, algorithm).unwrap();
        let theirs = reference(&x, &w, &b, p, relu);
        let case = format!("n{batch} c{c_in}->{c_out} {hw:?} k{k} {p:?} relu {relu} {algorithm:?}");
        assert!(
            max_relative(&ours, &theirs) < 1e-5,
            "forward {case}: {}",
            max_relative(&ours, &theirs)
        );
        // A loss that weights every output differently, so each gradient entry is tested.
        let probe = values(ours.dims(), 4);
        let g_ours = (&ours * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g_theirs = (&theirs * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let vars = [("input", &x), ("weight", &w), ("bias", &b)];
        assert_same_gradients(&g_ours, &g_theirs, &vars, &case);
    }

    /// Each named variable's gradient within 1e-4 relative of the reference's.
    fn assert_same_gradients(
        ours: &candle_core::backprop::GradStore,
        theirs: &candle_core::backprop::GradStore,
        vars: &[(&str, &Var)],
        case: &str,
    ) {
        for (name, var) in vars {
            let (a, b) = (ours.get(var).unwrap(), theirs.get(var).unwrap());
            assert!(
                max_relative(a, b) < 1e-4,
                "{name} gradient {case}: {}",
                max_relative(a, b)
            );
        }
    }

    #[test]
    fn odd_shapes_match_candle_forward_and_backward() {
        let same = Conv2dParams {
            stride: 1,
            padding: 1,
        };
        let valid = Conv2dParams {
            stride: 1,
            padding: 0,
        };
        let strided = Conv2dParams {
            stride: 2,
            padding: 1,
        };
        for &c in &[1, 3, 5, 17] {
            check(1, c, 5, (7, 9), 3, same, true);
            check(2, c, 3, (11, 6), 3, valid, false);
        }
        // Stride 2 with heights and widths of different remainders (candle's own backward
        // gets those wrong; the reference here has an even span so it is right).
        check(2, 3, 17, (9, 9), 3, strided, true);
        check(1, 64, 64, (13, 17), 3, same, true);
        check(1, 5, 7, (8, 10), 1, valid, false);
        check(
            2,
            3,
            4,
            (10, 8),
            5,
            Conv2dParams {
                stride: 1,
                padding: 2,
            },
            true,
        );
        check(
            1,
            4,
            6,
            (9, 7),
            2,
            Conv2dParams {
                stride: 2,
                padding: 0,
            },
            false,
        );
    }

    #[test]
    fn winograd_matches_candle_on_odd_shapes() {
        let same = Conv2dParams {
            stride: 1,
            padding: 1,
        };
        let valid = Conv2dParams {
            stride: 1,
            padding: 0,
        };
        // Odd output sizes leave half tiles at the right and bottom edges; a 1-pixel-high
        // output is one row of half tiles.
        for &c in &[1, 3, 5, 17, 64] {
            check_with(1, c, 5, (7, 9), 3, same, true, Algorithm::Winograd);
            check_with(2, c, 3, (11, 6), 3, valid, false, Algorithm::Winograd);
        }
        check_with(1, 17, 64, (13, 17), 3, same, true, Algorithm::Winograd);
        check_with(2, 8, 8, (3, 40), 3, valid, false, Algorithm::Winograd);
        check_with(1, 16, 16, (3, 3), 3, valid, true, Algorithm::Winograd);
        // Several blocks of tiles per image and per thread.
        check_with(1, 16, 32, (96, 80), 3, same, true, Algorithm::Winograd);
        // im2col keeps its own coverage on the shapes Auto sends to Winograd or to dot
        // products: stride 2 (the specialised gather), a ResNet stem's 7x7 stride 2 pad 3.
        check_with(1, 64, 64, (13, 17), 3, same, true, Algorithm::Im2col);
        let strided = |padding| Conv2dParams { stride: 2, padding };
        check_with(2, 3, 17, (9, 9), 3, strided(1), true, Algorithm::Im2col);
        check_with(1, 3, 8, (23, 31), 7, strided(3), false, Algorithm::Im2col);
        check_with(1, 5, 4, (9, 7), 2, strided(0), true, Algorithm::Im2col);
    }

    #[test]
    fn affine_equals_convolution_then_scale_and_shift_with_all_gradients() {
        let p = |stride, padding| Conv2dParams { stride, padding };
        // Through each path of Auto: dot products (6x7 outputs), Winograd (40x36), im2col
        // (stride 2, 3 channels); with and without the ReLU.
        for (c_in, c_out, hw, params, relu) in [
            (24, 20, (6, 7), p(1, 1), true),
            (16, 8, (40, 36), p(1, 1), false),
            (3, 5, (17, 15), p(2, 1), true),
        ] {
            let x = Var::from_tensor(&values(&[2, c_in, hw.0, hw.1], 1)).unwrap();
            let w = Var::from_tensor(&values(&[c_out, c_in, 3, 3], 2)).unwrap();
            let scale = Var::from_tensor(&(values(&[c_out], 3) + 1.5).unwrap()).unwrap();
            let bias = Var::from_tensor(&values(&[c_out], 4)).unwrap();
            let ours = conv2d_affine(&x, &w, &scale, &bias, params, relu).unwrap();
            let zero = Tensor::zeros(c_out, DType::F32, &candle_core::Device::Cpu).unwrap();
            let conv = reference(&x, &w, &zero, params, false);
            let theirs = conv
                .broadcast_mul(&scale.reshape((1, (), 1, 1)).unwrap())
                .unwrap()
                .broadcast_add(&bias.reshape((1, (), 1, 1)).unwrap())
                .unwrap();
            let theirs = if relu { theirs.relu().unwrap() } else { theirs };
            let case = format!("c{c_in}->{c_out} {hw:?} {params:?} relu {relu}");
            assert!(max_relative(&ours, &theirs) < 1e-5, "forward {case}");
            let probe = values(ours.dims(), 5);
            let loss = |y: &Tensor| (y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let (g_ours, g_theirs) = (loss(&ours), loss(&theirs));
            let vars = [
                ("input", &x),
                ("weight", &w),
                ("scale", &scale),
                ("bias", &bias),
            ];
            assert_same_gradients(&g_ours, &g_theirs, &vars, &case);
        }
    }

    #[test]
    fn stride_1_input_gradients_through_winograd_match_candle() {
        // Maps large enough for Auto to take Winograd for the rotated-kernel convolution of
        // the input gradient, padded (1 -> 1) and valid (0 -> 2), odd sizes.
        let p = |padding| Conv2dParams { stride: 1, padding };
        check(1, 16, 8, (41, 37), 3, p(1), true);
        check(2, 8, 16, (30, 27), 3, p(0), false);
        check(1, 12, 20, (45, 43), 3, p(2), true);
    }

    #[test]
    fn dot_products_match_candle_on_odd_shapes() {
        // Without AVX2 + FMA, Algorithm::Dot must fall back to the GEMM path: the same
        // comparisons then check that fallback.
        if !dot::available() {
            eprintln!("this CPU has no AVX2 + FMA: checking Algorithm::Dot's fallback instead");
        }
        let p = |stride, padding| Conv2dParams { stride, padding };
        for &c in &[1, 3, 5, 17, 64] {
            check_with(1, c, 5, (7, 9), 3, p(1, 1), true, Algorithm::Dot);
            check_with(2, c, 3, (11, 6), 3, p(1, 0), false, Algorithm::Dot);
            check_with(2, c, 7, (9, 7), 3, p(2, 1), true, Algorithm::Dot);
        }
        // PoseNet's deep layers: 1x1 strided shortcut, 3x3 on a 4x5 map, K with a tail.
        check_with(1, 64, 128, (8, 10), 1, p(2, 0), false, Algorithm::Dot);
        check_with(1, 128, 130, (4, 5), 3, p(1, 1), true, Algorithm::Dot);
        check_with(1, 3, 9, (10, 8), 5, p(1, 2), true, Algorithm::Dot);
        check_with(1, 4, 6, (9, 7), 2, p(2, 0), false, Algorithm::Dot);
        // Auto picks it on small maps: the same numbers through the default entry point.
        check(1, 32, 48, (6, 7), 3, p(1, 1), true);
    }

    #[test]
    fn images_wider_than_one_tile_match_candle() {
        // 96x80 outputs make several tiles per image for a K of 3*3*3.
        check(
            1,
            3,
            16,
            (96, 80),
            3,
            Conv2dParams {
                stride: 1,
                padding: 1,
            },
            true,
        );
        check(
            2,
            16,
            8,
            (40, 36),
            3,
            Conv2dParams {
                stride: 2,
                padding: 1,
            },
            false,
        );
    }

    #[test]
    fn mismatched_shapes_are_refused_with_the_reason() {
        let x = values(&[1, 3, 8, 8], 1);
        let w = values(&[4, 2, 3, 3], 2);
        let b = values(&[4], 3);
        let err = conv2d(
            &x,
            &w,
            &b,
            Conv2dParams {
                stride: 1,
                padding: 1,
            },
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("input channels"), "{err}");
        let w = values(&[4, 3, 11, 11], 2);
        let err = conv2d(
            &x,
            &w,
            &b,
            Conv2dParams {
                stride: 1,
                padding: 1,
            },
            false,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("larger than the padded input"),
            "{err}"
        );
    }
}
