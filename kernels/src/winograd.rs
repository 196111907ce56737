//! Winograd F(2x2, 3x3) for the forward pass of 3x3 stride-1 convolutions (Lavin & Gray,
//! "Fast Algorithms for Convolutional Neural Networks", 2016).
//!
//! Each 2x2 block of outputs (a tile) is computed from the 4x4 input patch under it:
//! `Y = A^T [ sum over c_in of (G g G^T) . (B^T d B) ] A`, so the multiply-adds become 16
//! GEMMs of (C_out x C_in) by (C_in x tiles), one per position of the 4x4 transformed
//! patch: 16 C_in C_out multiply-adds per tile of 4 outputs against 36 C_in C_out for
//! im2col. Tiles go in blocks small enough for the transformed inputs and products to stay
//! in L2 between the transforms and the GEMMs; blocks spread over the threads. The
//! transforms only add and subtract (with halves in G), so the results match the direct
//! convolution to a few ULPs of the sums.

use std::mem::MaybeUninit;

use gemm::Parallelism;
use rayon::prelude::*;

use crate::conv2d::{matmul, Epilogue, SharedMut};

/// Sizes of a 3x3 stride-1 convolution of one batch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Winograd {
    pub batch: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub height: usize,
    pub width: usize,
    pub padding: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl Winograd {
    fn tiles_h(&self) -> usize {
        self.out_h.div_ceil(2)
    }

    fn tiles_w(&self) -> usize {
        self.out_w.div_ceil(2)
    }

    /// Tiles per block: the transformed inputs and the products of one block (16 (C_in +
    /// C_out) floats a tile) in about 1 MB, and at least one block per thread when the
    /// image allows.
    fn block(&self) -> usize {
        let tiles = self.tiles_h() * self.tiles_w();
        let threads = rayon::current_num_threads().max(1);
        let by_cache = ((1 << 18) / (16 * (self.c_in + self.c_out))).max(32);
        by_cache.min(tiles.div_ceil(threads).max(16))
    }
}

/// `U[xi][co][ci]` = (G g G^T) at position xi of the 4x4 transform, for every 3x3 kernel g,
/// times the output channel's scale if there is one (the transform is linear).
fn transform_weights(w: &[f32], c_out: usize, c_in: usize, scale: Option<&[f32]>) -> Vec<f32> {
    let mut u = vec![0f32; 16 * c_out * c_in];
    for (kernel, g) in w.chunks_exact(9).enumerate() {
        let s = scale.map_or(1.0, |scale| scale[kernel / c_in]);
        // G g: 4x3, G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1].
        let mut gg = [[0f32; 3]; 4];
        for j in 0..3 {
            let (g0, g1, g2) = (g[j], g[3 + j], g[6 + j]);
            gg[0][j] = g0;
            gg[1][j] = 0.5 * (g0 + g1 + g2);
            gg[2][j] = 0.5 * (g0 - g1 + g2);
            gg[3][j] = g2;
        }
        // (G g) G^T: 4x4.
        for (i, row) in gg.iter().enumerate() {
            let (r0, r1, r2) = (row[0], row[1], row[2]);
            let values = [r0, 0.5 * (r0 + r1 + r2), 0.5 * (r0 - r1 + r2), r2];
            for (j, v) in values.into_iter().enumerate() {
                u[(i * 4 + j) * c_out * c_in + kernel] = s * v;
            }
        }
    }
    u
}

/// `out = epilogue(conv(x, w))` for a 3x3 kernel, stride 1; `out` holds
/// `batch * c_out * out_h * out_w` floats and is overwritten, every one of them (so it may
/// be uninitialised): the blocks cover all tile rows, each tile row's two output rows (the
/// second only when inside the image) take all `out_w` columns of every channel.
pub(crate) fn conv3x3(
    s: &Winograd,
    x: &[f32],
    w: &[f32],
    epilogue: Epilogue,
    out: &mut [MaybeUninit<f32>],
) {
    let u = transform_weights(w, s.c_out, s.c_in, epilogue.scale);
    let (b, relu) = (epilogue.bias, epilogue.relu);
    let tw = s.tiles_w();
    let rows_per_block = s.block().div_ceil(tw).max(1);
    let blocks: Vec<(usize, usize)> = (0..s.tiles_h())
        .step_by(rows_per_block)
        .map(|ty0| (ty0, (ty0 + rows_per_block).min(s.tiles_h())))
        .collect();
    let threads = rayon::current_num_threads().max(1);
    let parallelism = if blocks.len() >= threads {
        Parallelism::None
    } else {
        Parallelism::Rayon(threads)
    };
    let plane = s.height * s.width;
    let out_plane = s.out_h * s.out_w;
    assert!(out.len() >= s.batch * s.c_out * out_plane);
    let out_ptr = SharedMut(out.as_mut_ptr().cast());
    for n in 0..s.batch {
        let image = &x[n * s.c_in * plane..(n + 1) * s.c_in * plane];
        let out_image = SharedMut(out_ptr.at(n * s.c_out * out_plane));
        blocks.par_iter().for_each_init(
            || (Vec::new(), Vec::new(), Vec::new()),
            |(v, m, scratch), &(ty0, ty1)| {
                let tb = (ty1 - ty0) * tw;
                v.resize(16 * s.c_in * tb, 0.0);
                m.resize(16 * s.c_out * tb, 0.0);
                transform_inputs(s, image, ty0, ty1, v, scratch);
                for xi in 0..16 {
                    // M[xi] (C_out x tb) = U[xi] (C_out x C_in) * V[xi] (C_in x tb).
                    // SAFETY: m and v (this thread's own) were sized to 16 of these blocks
                    // just above, u holds 16 C_out x C_in blocks; slice indexing checks each
                    // block's start.
                    unsafe {
                        matmul(
                            s.c_out,
                            tb,
                            s.c_in,
                            (m[xi * s.c_out * tb..].as_mut_ptr(), tb, 1),
                            (u[xi * s.c_out * s.c_in..].as_ptr(), s.c_in, 1),
                            (v[xi * s.c_in * tb..].as_ptr(), tb, 1),
                            false,
                            parallelism,
                        );
                    }
                }
                // Blocks own disjoint tile rows, hence disjoint output rows.
                transform_outputs(s, m, b, relu, ty0, ty1, out_image, scratch);
            },
        );
    }
}

/// `dst[i] = a[i] + b[i]` (and the other element-wise steps of the transforms): plain loops
/// over equal-length slices, which the compiler vectorises across tiles.
#[inline(always)]
fn add(dst: &mut [f32], a: &[f32], b: &[f32]) {
    for ((d, a), b) in dst.iter_mut().zip(a).zip(b) {
        *d = a + b;
    }
}

#[inline(always)]
fn sub(dst: &mut [f32], a: &[f32], b: &[f32]) {
    for ((d, a), b) in dst.iter_mut().zip(a).zip(b) {
        *d = a - b;
    }
}

/// `dst = a + b + c`
#[inline(always)]
fn add3(dst: &mut [f32], a: &[f32], b: &[f32], c: &[f32]) {
    for (((d, a), b), c) in dst.iter_mut().zip(a).zip(b).zip(c) {
        *d = a + b + c;
    }
}

/// `dst = a - b - c`
#[inline(always)]
fn sub2(dst: &mut [f32], a: &[f32], b: &[f32], c: &[f32]) {
    for (((d, a), b), c) in dst.iter_mut().zip(a).zip(b).zip(c) {
        *d = a - b - c;
    }
}

/// Calls `$body` (a call of an `#[inline(always)]` function over the named arguments)
/// compiled for AVX-512 or AVX2 + FMA when the CPU has them, for baseline x86-64 otherwise.
macro_rules! with_simd {
    (($($arg:ident: $ty:ty),*) => $body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f")]
            unsafe fn avx512($($arg: $ty),*) {
                $body
            }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) {
                $body
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has the features the function is compiled for.
                unsafe { avx512($($arg),*) }
            } else if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: as above.
                unsafe { avx2($($arg),*) }
            } else {
                $body
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $body
        }
    }};
}

/// The transformed patches of tile rows `ty0..ty1` of one image into `v`, laid out
/// `[xi][c_in][tile]`; `scratch` is reused between calls.
fn transform_inputs(
    s: &Winograd,
    image: &[f32],
    ty0: usize,
    ty1: usize,
    v: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    with_simd!((s: &Winograd, image: &[f32], ty0: usize, ty1: usize, v: &mut [f32], scratch: &mut Vec<f32>)
        => transform_inputs_body(s, image, ty0, ty1, v, scratch))
}

#[inline(always)]
fn transform_inputs_body(
    s: &Winograd,
    image: &[f32],
    ty0: usize,
    ty1: usize,
    v: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let tw = s.tiles_w();
    let tb = (ty1 - ty0) * tw;
    let plane = s.height * s.width;
    // The patch's four input rows, each split into its even and odd padded columns (tw + 1
    // each): tile tx reads even[tx], odd[tx], even[tx + 1], odd[tx + 1]. Then the 16 rows of
    // the vertical pass, each a vector over the tiles of one tile row.
    let row_len = tw + 1;
    scratch.resize(8 * row_len + 16 * tw, 0.0);
    let (rows, t) = scratch.split_at_mut(8 * row_len);
    for c in 0..s.c_in {
        let channel = &image[c * plane..(c + 1) * plane];
        for ty in ty0..ty1 {
            for i in 0..4 {
                let (even, odd) =
                    rows[2 * i * row_len..(2 * i + 2) * row_len].split_at_mut(row_len);
                match (2 * ty + i)
                    .checked_sub(s.padding)
                    .filter(|&y| y < s.height)
                {
                    None => {
                        even.fill(0.0);
                        odd.fill(0.0);
                    }
                    Some(y) => {
                        let src = &channel[y * s.width..(y + 1) * s.width];
                        let at = |x: usize| {
                            x.checked_sub(s.padding)
                                .and_then(|x| src.get(x))
                                .copied()
                                .unwrap_or(0.0)
                        };
                        for k in 0..row_len {
                            even[k] = at(2 * k);
                            odd[k] = at(2 * k + 1);
                        }
                    }
                }
            }
            // Column j of patch row i, over the tiles: even or odd columns, shifted by j / 2.
            let d = |i: usize, j: usize| -> &[f32] {
                let start = (2 * i + j % 2) * row_len + j / 2;
                &rows[start..start + tw]
            };
            // t = B^T d, column by column of the patch.
            let (t0, rest) = t.split_at_mut(4 * tw);
            let (t1, rest) = rest.split_at_mut(4 * tw);
            let (t2, t3) = rest.split_at_mut(4 * tw);
            for j in 0..4 {
                let cols = j * tw..(j + 1) * tw;
                sub(&mut t0[cols.clone()], d(0, j), d(2, j));
                add(&mut t1[cols.clone()], d(1, j), d(2, j));
                sub(&mut t2[cols.clone()], d(2, j), d(1, j));
                sub(&mut t3[cols], d(1, j), d(3, j));
            }
            // v = t B, row by row, straight into the block's buffer.
            let base = (ty - ty0) * tw;
            for (i, ti) in [&*t0, &*t1, &*t2, &*t3].into_iter().enumerate() {
                let col = |j: usize| &ti[j * tw..(j + 1) * tw];
                let at = |xi: usize| {
                    let o = ((i * 4 + xi) * s.c_in + c) * tb + base;
                    o..o + tw
                };
                sub(&mut v[at(0)], col(0), col(2));
                add(&mut v[at(1)], col(1), col(2));
                sub(&mut v[at(2)], col(2), col(1));
                sub(&mut v[at(3)], col(1), col(3));
            }
        }
    }
}

/// The outputs of tile rows `ty0..ty1` from their products `m` (`[xi][c_out][tile]`), with
/// bias and ReLU, written into the image's output at `dst`.
#[allow(clippy::too_many_arguments)]
fn transform_outputs(
    s: &Winograd,
    m: &[f32],
    b: &[f32],
    relu: bool,
    ty0: usize,
    ty1: usize,
    dst: SharedMut,
    scratch: &mut Vec<f32>,
) {
    with_simd!((s: &Winograd, m: &[f32], b: &[f32], relu: bool, ty0: usize, ty1: usize, dst: SharedMut, scratch: &mut Vec<f32>)
        => transform_outputs_body(s, m, b, relu, ty0, ty1, dst, scratch))
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn transform_outputs_body(
    s: &Winograd,
    m: &[f32],
    b: &[f32],
    relu: bool,
    ty0: usize,
    ty1: usize,
    dst: SharedMut,
    scratch: &mut Vec<f32>,
) {
    let tw = s.tiles_w();
    let tb = (ty1 - ty0) * tw;
    let out_plane = s.out_h * s.out_w;
    scratch.resize(12 * tw, 0.0);
    let (r, y) = scratch[..12 * tw].split_at_mut(8 * tw);
    for (co, &bias) in b.iter().enumerate() {
        for ty in ty0..ty1 {
            let base = (ty - ty0) * tw;
            let mm = |xi: usize| {
                let o = (xi * s.c_out + co) * tb + base;
                &m[o..o + tw]
            };
            // r = A^T m (2 x 4 vectors over the tiles), then y = r A (2 x 2).
            for j in 0..4 {
                add3(&mut r[j * tw..(j + 1) * tw], mm(j), mm(4 + j), mm(8 + j));
                sub2(
                    &mut r[(4 + j) * tw..(5 + j) * tw],
                    mm(4 + j),
                    mm(8 + j),
                    mm(12 + j),
                );
            }
            let rr = |a: usize, j: usize| &r[(a * 4 + j) * tw..(a * 4 + j + 1) * tw];
            for a in 0..2 {
                let (y0, y1) = y[2 * a * tw..(2 * a + 2) * tw].split_at_mut(tw);
                add3(y0, rr(a, 0), rr(a, 1), rr(a, 2));
                sub2(y1, rr(a, 1), rr(a, 2), rr(a, 3));
            }
            for v in y.iter_mut() {
                *v += bias;
                if relu {
                    *v = v.max(0.0);
                }
            }
            for a in 0..2 {
                let oy = 2 * ty + a;
                if oy >= s.out_h {
                    continue;
                }
                // SAFETY: the row lies in this image's output (co < c_out, oy < out_h, and
                // conv3x3 checked the buffer's length), and only this block writes it. It may
                // be uninitialised, hence MaybeUninit.
                let row = unsafe {
                    std::slice::from_raw_parts_mut(
                        dst.at(co * out_plane + oy * s.out_w)
                            .cast::<MaybeUninit<f32>>(),
                        s.out_w,
                    )
                };
                let (y0, y1) = y[2 * a * tw..(2 * a + 2) * tw].split_at(tw);
                let pairs = s.out_w / 2;
                for (pair, (&left, &right)) in row.chunks_exact_mut(2).zip(y0.iter().zip(y1)) {
                    pair[0].write(left);
                    pair[1].write(right);
                }
                if s.out_w % 2 == 1 {
                    row[s.out_w - 1].write(y0[pairs]);
                }
            }
        }
    }
}
