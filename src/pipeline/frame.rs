//! What one inference call takes and gives: the decoded `Frame`, per-call `InferOptions`, and
//! the `Outputs` of every head.

use std::time::Duration;

use crate::image::{CameraIntrinsics, DepthImage, MonoImage, RgbImage};
use crate::postprocess::{GraspCandidate, GraspsDropped, Instance, InstanceImage, Workspace};

/// One decoded camera frame: colour, registered depth when it arrived, intrinsics when known.
#[derive(Clone, Debug)]
pub struct Frame {
    pub rgb: RgbImage,
    pub depth: Option<DepthImage>,
    pub camera: Option<CameraIntrinsics>,
}

/// Per-call choices (from run-time parameters and who is subscribed).
#[derive(Clone, Copy, Debug)]
pub struct InferOptions {
    /// Produce the coloured overlay (only when someone subscribes to it).
    pub overlay: bool,
    /// Overlay blending weight of the class colour, in [0, 1].
    pub overlay_alpha: f32,
    /// Connected components smaller than this many pixels are not instances.
    pub min_instance_px: u32,
    /// Grasps published: at most this many, each at least this quality.
    pub grasp_top_k: usize,
    pub grasp_min_quality: f32,
    /// Grasps whose centre (camera optical frame) lies outside this box are dropped; `None`
    /// = no box (the bin interior and the background rule still apply).
    pub workspace: Option<Workspace>,
}

/// Which gripper a grasp is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gripper {
    /// Scored by the grasp network (GQ-CNN).
    ParallelJaw,
    /// Scored by the suction seal model (`postprocess::sample_suction`); the candidate's
    /// width and angle are 0, its approach depth the contact's.
    Suction,
}

/// A grasp candidate with its quality and its pose in the camera optical frame (z = approach;
/// x = closing direction for a parallel-jaw grasp).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoredGrasp {
    pub gripper: Gripper,
    pub candidate: GraspCandidate,
    pub quality: f32,
    pub position_m: [f64; 3],
    pub orientation_xyzw: [f64; 4],
}

/// Wall time of each stage of one inference.
#[derive(Clone, Copy, Debug, Default)]
pub struct StageTimings {
    pub preprocess: Duration,
    pub inference: Duration,
    pub postprocess: Duration,
}

/// The camera's pose in the work cell from the pose head, with its uncertainty.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CameraPose {
    pub position_m: [f64; 3],
    /// Unit quaternion (x, y, z, w): cell from camera optical frame.
    pub orientation_xyzw: [f64; 4],
    /// Row-major 6x6 over (x, y, z, rotation about X, Y, Z), as
    /// geometry_msgs/PoseWithCovariance has it: the model's held-out mean squared residuals on
    /// the diagonal.
    pub covariance: [f64; 36],
}

/// What the heads produced for one frame, at the frame's resolution.
#[derive(Clone, Debug)]
pub struct Outputs {
    /// Class id per pixel.
    pub mask: MonoImage,
    pub overlay: Option<RgbImage>,
    /// Instance id per pixel and the instances (detections), object classes only.
    pub instances: InstanceImage,
    pub detections: Vec<Instance>,
    /// The depth head's estimate (metres), when that head is on.
    pub depth_estimate: Option<DepthImage>,
    /// The pose head's estimate, when that head is on.
    pub camera_pose: Option<CameraPose>,
    /// Ranked grasps (best first), when the grasp head is on and depth and camera_info are
    /// known.
    pub grasps: Vec<ScoredGrasp>,
    /// Grasp candidates dropped before scoring because a robot may not reach them (on the
    /// background, outside the bin's interior, outside the workspace box).
    pub grasps_dropped: GraspsDropped,
    pub timings: StageTimings,
}
