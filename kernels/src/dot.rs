//! The forward GEMM of convolutions with few output positions (a ResNet's deep layers at
//! batch 1: PoseNet's layer4 is 20 positions of 256 channels with K = 2304), as dot products
//! along K.
//!
//! `out (C_out x P) = W (C_out x K) * col (K x P)` with P in the tens is a matrix-vector
//! product in disguise: a general GEMM packs the whole weight matrix into its panel layout
//! first, as many bytes moved as the multiplication itself reads, for a handful of columns.
//! Here the columns are gathered transposed instead (P rows of K, each contiguous), and a
//! 4 x 3 micro-kernel runs down K over four weight rows and three column rows as they lie,
//! eight lanes at a time: twelve accumulators, seven loads for twelve FMAs, no packing. The
//! weight rows are read once; the gathered columns (P K floats) stay in L2. The epilogue
//! (scale, bias, ReLU) is applied as the sums are written.
//!
//! AVX2 + FMA only (x86-64); [`available`] says whether this CPU runs it, and the caller
//! takes the general path otherwise.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::conv2d::Epilogue;

/// Weight rows per micro-tile.
const MR: usize = 4;
/// Column rows per micro-tile.
const NR: usize = 3;

/// Whether this CPU runs the dot-product kernel.
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `out[i * n + j] = epilogue(i, sum_k w[i * k + kk] * cols[j * k + kk])` for `i < m`,
/// `j < n`. `w` holds `m` rows of `k`, `cols` `n` rows of `k`, `out` `m` rows of `n`; rows of
/// `out` spread over the threads. Writes all `m * n` values of `out`, which may be
/// uninitialised.
///
/// # Panics
/// If [`available`] is false, or a slice is shorter than its sizes say.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_rows_by_rows(
    m: usize,
    n: usize,
    k: usize,
    w: &[f32],
    cols: &[f32],
    epilogue: Epilogue,
    out: &mut [MaybeUninit<f32>],
) {
    assert!(available(), "the dot-product kernel needs AVX2 and FMA");
    assert!(
        w.len() >= m * k && cols.len() >= n * k && epilogue.bias.len() >= m && out.len() >= m * n
    );
    if m == 0 || n == 0 {
        return;
    }
    // Tasks of whole micro-tile rows, a few per thread so uneven ones balance.
    let threads = rayon::current_num_threads().max(1);
    let rows = (m.div_ceil(4 * threads)).next_multiple_of(MR).max(MR);
    out[..m * n]
        .par_chunks_mut(rows * n)
        .enumerate()
        .for_each(|(t, out)| {
            let i0 = t * rows;
            let count = out.len() / n;
            // SAFETY: available() checked above (the CPU has the AVX2 and FMA that block's
            // target_feature needs); the slices cover rows i0..i0 + count: w's rows of k and
            // out's rows of n, and cols all n rows of k (lengths asserted above).
            #[cfg(target_arch = "x86_64")]
            unsafe {
                avx2::block(
                    count,
                    n,
                    k,
                    &w[i0 * k..(i0 + count) * k],
                    cols,
                    i0,
                    epilogue,
                    out,
                )
            };
        });
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Epilogue, MR, NR};
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// One task's rows, output channels `first..first + m`: every micro-tile of `m` weight
    /// rows by `n` column rows.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `w` holds `m` rows of `k`, `cols` `n` rows of `k`, `out` `m`
    /// rows of `n` (the micro-tiles read through raw pointers within these).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn block(
        m: usize,
        n: usize,
        k: usize,
        w: &[f32],
        cols: &[f32],
        first: usize,
        epilogue: Epilogue,
        out: &mut [MaybeUninit<f32>],
    ) {
        for i0 in (0..m).step_by(MR) {
            for j0 in (0..n).step_by(NR) {
                let a = w.as_ptr().add(i0 * k);
                let b = cols.as_ptr().add(j0 * k);
                let mut sums = [[0f32; NR]; MR];
                // Full tiles take the unrolled kernel; edges the same code at their size.
                match ((m - i0).min(MR), (n - j0).min(NR)) {
                    (4, 3) => tile::<4, 3>(k, a, b, &mut sums),
                    (4, 2) => tile::<4, 2>(k, a, b, &mut sums),
                    (4, 1) => tile::<4, 1>(k, a, b, &mut sums),
                    (3, 3) => tile::<3, 3>(k, a, b, &mut sums),
                    (3, 2) => tile::<3, 2>(k, a, b, &mut sums),
                    (3, 1) => tile::<3, 1>(k, a, b, &mut sums),
                    (2, 3) => tile::<2, 3>(k, a, b, &mut sums),
                    (2, 2) => tile::<2, 2>(k, a, b, &mut sums),
                    (2, 1) => tile::<2, 1>(k, a, b, &mut sums),
                    (1, 3) => tile::<1, 3>(k, a, b, &mut sums),
                    (1, 2) => tile::<1, 2>(k, a, b, &mut sums),
                    (1, 1) => tile::<1, 1>(k, a, b, &mut sums),
                    _ => unreachable!("micro-tiles are at most {MR} x {NR}"),
                }
                for (di, row) in sums.iter().enumerate().take((m - i0).min(MR)) {
                    let i = i0 + di;
                    for (dj, &s) in row.iter().enumerate().take((n - j0).min(NR)) {
                        out[i * n + j0 + dj].write(epilogue.apply(first + i, s));
                    }
                }
            }
        }
    }

    /// `sums[i][j] = sum_kk a[i * k + kk] * b[j * k + kk]` for `R` rows of `a` and `C` of `b`.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `a` points at `R` rows of `k` floats and `b` at `C` rows of
    /// `k`, all readable.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const R: usize, const C: usize>(
        k: usize,
        a: *const f32,
        b: *const f32,
        sums: &mut [[f32; NR]; MR],
    ) {
        let mut acc = [[_mm256_setzero_ps(); C]; R];
        let k8 = k / 8 * 8;
        let mut kk = 0;
        while kk < k8 {
            let mut bv = [_mm256_setzero_ps(); C];
            for (j, v) in bv.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(b.add(j * k + kk));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let av = _mm256_loadu_ps(a.add(i * k + kk));
                for (s, &bj) in row.iter_mut().zip(&bv) {
                    *s = _mm256_fmadd_ps(av, bj, *s);
                }
            }
            kk += 8;
        }
        for i in 0..R {
            for j in 0..C {
                let mut s = horizontal_sum(acc[i][j]);
                for t in k8..k {
                    s += *a.add(i * k + t) * *b.add(j * k + t);
                }
                sums[i][j] = s;
            }
        }
    }

    /// # Safety
    /// The CPU has AVX2 (the function only reads its argument).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn horizontal_sum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0b01));
        _mm_cvtss_f32(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_plain_triple_loop_on_edge_sizes() {
        if !available() {
            // What this CPU can check: the kernel refuses to run, as its doc says.
            let refused = std::panic::catch_unwind(|| {
                let mut out = [MaybeUninit::new(0f32)];
                let epilogue = Epilogue {
                    scale: None,
                    bias: &[0.0],
                    relu: false,
                };
                gemm_rows_by_rows(1, 1, 1, &[1.0], &[1.0], epilogue, &mut out);
            });
            assert!(
                refused.is_err(),
                "the dot kernel ran on a CPU without AVX2 + FMA"
            );
            eprintln!("this CPU has no AVX2 + FMA: checked only that the kernel refuses to run");
            return;
        }
        // Every edge micro-tile (m, n not multiples of 4, 3) and K with and without a tail.
        for (m, n, k) in [
            (1, 1, 1),
            (5, 7, 9),
            (4, 3, 8),
            (9, 2, 23),
            (17, 20, 2304),
            (3, 5, 16),
        ] {
            let w: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
                .collect();
            let cols: Vec<f32> = (0..n * k)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0)
                .collect();
            let bias: Vec<f32> = (0..m).map(|i| i as f32 * 0.25 - 1.0).collect();
            let scale: Vec<f32> = (0..m).map(|i| 1.5 - i as f32 * 0.125).collect();
            for (relu, scaled) in [(false, false), (true, false), (true, true)] {
                // NaN where a value was not written: the comparison below fails on it.
                let mut out = vec![MaybeUninit::new(f32::NAN); m * n];
                let epilogue = Epilogue {
                    scale: scaled.then_some(&scale[..]),
                    bias: &bias,
                    relu,
                };
                gemm_rows_by_rows(m, n, k, &w, &cols, epilogue, &mut out);
                for i in 0..m {
                    for j in 0..n {
                        let dot: f64 = (0..k)
                            .map(|t| w[i * k + t] as f64 * cols[j * k + t] as f64)
                            .sum();
                        let s = if scaled { scale[i] as f64 } else { 1.0 };
                        let want = s * dot + bias[i] as f64;
                        let want = if relu { want.max(0.0) } else { want };
                        // SAFETY: every element was initialised (NaN) above.
                        let got = unsafe { out[i * n + j].assume_init() } as f64;
                        assert!(
                            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "m{m} n{n} k{k} relu {relu} at ({i}, {j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
