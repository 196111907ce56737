//! Data sets for training: real ones that install offline (IDX files such as Debian's
//! Fashion-MNIST) and, with the training issue's next steps, the generated bin scenes.

mod bin_dataset;
mod idx;

pub use bin_dataset::BinDataset;
pub use idx::{parse_idx, read_idx, IdxArray, IdxError};
