//! Data sets for training: real ones that install offline (IDX files such as Debian's
//! Fashion-MNIST), folders of PNG images per class, and the generated bin scenes.

mod bin_dataset;
mod idx;
mod image_folder;
mod png_rgb;

pub use bin_dataset::BinDataset;
pub use idx::{parse_idx, read_idx, IdxArray, IdxError};
pub use image_folder::{resize_bilinear, ImageFolder};
pub use png_rgb::read_png_rgb;
