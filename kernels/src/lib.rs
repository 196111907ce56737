//! CPU convolution kernels for perception's networks, as Candle custom ops with forward and
//! backward passes.
//!
//! Candle 0.11's CPU conv2d repacks the whole input single-threaded before its matmul, and
//! its backward goes through a direct-loop transposed convolution. Here a convolution is
//! im2col into tiles of output columns feeding `gemm`, the tiles spread over the threads;
//! bias and ReLU are applied while a tile is still in cache. The input gradient is the
//! transposed GEMM followed by col2im, the weight gradient a GEMM against the same columns.
//!
//! Layout: NCHW f32, weights (C_out, C_in, kH, kW), any kernel size, stride and zero padding;
//! no dilation, no groups (the callers fall back to Candle's ops for those and for other
//! devices).

mod conv2d;

pub use conv2d::{conv2d, Conv2dParams};
