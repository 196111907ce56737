//! From network output to what the node publishes: class masks and depth at input
//! resolution, coloured overlays.

mod depth;
mod mask;
mod overlay;

pub use depth::{depth_output_to_image, DepthOutputError};
pub use mask::{logits_to_class_mask, resize_mask_nearest};
pub use overlay::blend_overlay;
