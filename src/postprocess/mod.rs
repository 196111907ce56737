//! From network output to what the node publishes: class masks at input resolution and
//! coloured overlays.

mod mask;
mod overlay;

pub use mask::{logits_to_class_mask, resize_mask_nearest};
pub use overlay::blend_overlay;
