//! From network output to what the node publishes: class masks and depth at input
//! resolution, coloured overlays, object instances (labelled, located in 3-D, scored), and
//! grasp candidates for parallel-jaw and suction grippers, kept only where a robot may reach.

mod depth;
mod grasps;
mod instances;
mod mask;
mod overlay;
mod reach;
mod suction;

pub use depth::{depth_output_to_image, DepthOutputError};
pub use grasps::{sample_parallel_jaw, GraspCandidate, GraspSampling};
pub use instances::{label_instances, locate_instances, score_instances, Instance, InstanceImage};
pub use mask::{logits_to_class_mask, resize_mask_nearest};
pub use overlay::blend_overlay;
pub use reach::{BinInterior, GraspsDropped, Reach, Unreachable, Workspace, FLOOR_TOLERANCE_M};
pub use suction::{sample_suction, SuctionCup, SuctionGrasp};
