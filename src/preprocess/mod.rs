//! From camera bytes to network input: validation and decoding of raw images (any row
//! padding), depth in metres, resizing and normalisation.

mod color;
mod depth;
mod grasp_patch;
mod input_error;
mod raw_image;
mod tensor;

pub use color::decode_color;
pub use depth::{check_depth_matches, decode_depth};
pub use grasp_patch::{grasp_depth_patch, GraspInImage};
pub use input_error::InputError;
pub use raw_image::{ColorEncoding, DepthEncoding, RawImage};
pub use tensor::{resize_rgb, rgb_to_input_tensor, Normalization};
