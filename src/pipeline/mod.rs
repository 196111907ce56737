//! `Pipeline::infer(&Frame) -> Outputs`: the enabled heads on one frame, knowing nothing of ROS.

mod device;
mod frame;
mod infer;

pub use device::{select_device, DeviceChoice, SelectedDevice};
pub use frame::{CameraPose, Frame, Gripper, InferOptions, Outputs, ScoredGrasp, StageTimings};
pub use infer::{Pipeline, PipelineError};
