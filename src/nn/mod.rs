//! Building blocks shared by the networks. Field names and `pp(...)` strings are the
//! PyTorch attribute names, so a PyTorch `state_dict()` saved as safetensors loads as is.

mod activation;
mod conv;
mod conv_block;
mod dropout;
mod inception;
mod init;
pub mod loss;
mod pool;
mod residual;
mod trace;

pub use activation::{Activation, LEAKY_RELU_SLOPE};
pub use conv::{
    batch_norm_train, conv2d, conv2d_batch_norm_eval, conv2d_bias_relu, conv_transpose2d,
    cpu_kernels_enabled, fold_batch_norm,
};
pub use conv_block::{ConvBnAct, ConvSpec, DoubleConv};
pub use dropout::Dropout;
pub use inception::{Inception, InceptionSpec};
pub use init::{initialize, Init};
pub use pool::{avg_pool2d, global_avg_pool, max_pool2d, max_pool2x2, PoolSpec};
pub use residual::{BlockKind, ResidualBlock};
pub use trace::{Trace, TraceRow};
