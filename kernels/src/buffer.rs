//! Output buffers that a kernel writes completely before anything reads them.

use std::mem::MaybeUninit;

/// A vector of `len` floats, each stored by `write` into the uninitialised slice it is given.
/// Skips zero-filling megabytes per layer, which measured 5 % of a U-Net training step
/// (Candle's CPU backend allocates its outputs uninitialised too). GEMM writers take
/// `out.as_mut_ptr().cast::<f32>()`; others `MaybeUninit::write`.
///
/// # Safety
/// `write` must initialise all `len` elements.
pub(crate) unsafe fn written_by(
    len: usize,
    write: impl FnOnce(&mut [MaybeUninit<f32>]),
) -> Vec<f32> {
    let mut buffer = Vec::with_capacity(len);
    write(&mut buffer.spare_capacity_mut()[..len]);
    // SAFETY: the capacity is at least `len`, and the caller promises that `write`
    // initialised the first `len` elements.
    unsafe { buffer.set_len(len) };
    buffer
}
