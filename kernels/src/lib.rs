//! CPU convolution kernels for perception's networks, as Candle custom ops with forward and
//! backward passes.
//!
//! Candle 0.11's CPU conv2d repacks the whole input single-threaded before its matmul, and
//! its backward goes through a direct-loop transposed convolution. Here a convolution is
//! im2col into tiles of output columns feeding `gemm`, the tiles spread over the threads;
//! bias and ReLU are applied while a tile is still in cache. The forward pass of 3x3 stride-1
//! convolutions with 8 or more channels is Winograd F(2x2, 3x3) instead: 16 small GEMMs
//! between input and output transforms, 2.25 times fewer multiply-adds. Outputs of few
//! positions (deep layers on small maps) take dot products along K over the weight rows as
//! they lie, without the GEMM's packing of the weights. The input gradient of a stride-1
//! convolution is itself a convolution (rotated kernels, swapped channel axes), so it takes
//! the same three paths; other strides take the transposed GEMM followed by col2im. The
//! weight gradient is a GEMM against the same columns.
//!
//! The up-convolution of a U-Net (a transposed convolution with kernel = stride) is one GEMM
//! and a scatter; 2x2 max pooling is one pass with an exact first-maximum gradient.
//!
//! Layout: NCHW f32, weights (C_out, C_in, kH, kW), any kernel size, stride and zero padding;
//! no dilation, no groups (the callers fall back to Candle's ops for those and for other
//! devices).

mod batch_norm;
mod buffer;
mod conv2d;
mod dot;
mod max_pool;
#[cfg(test)]
mod test_values;
mod up_conv;
mod winograd;

pub use batch_norm::{batch_norm_train, channel_moments};
pub use conv2d::{conv2d, conv2d_affine, Conv2dParams};
pub use max_pool::{max_pool2d, max_pool2x2};
pub use up_conv::up_conv2d;
