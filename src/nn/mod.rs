//! Building blocks shared by the networks. Field names and `pp(...)` strings are the
//! PyTorch attribute names, so a PyTorch `state_dict()` saved as safetensors loads as is.

mod conv_block;
mod init;
mod pool;

pub use conv_block::{ConvBnRelu, DoubleConv};
pub use init::init_seeded;
pub use pool::max_pool2x2;
