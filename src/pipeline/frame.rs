use std::time::Duration;

use crate::image::{CameraIntrinsics, DepthImage, MonoImage, RgbImage};

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
}

/// Wall time of each stage of one inference.
#[derive(Clone, Copy, Debug, Default)]
pub struct StageTimings {
    pub preprocess: Duration,
    pub inference: Duration,
    pub postprocess: Duration,
}

/// What the heads produced for one frame, at the frame's resolution.
#[derive(Clone, Debug)]
pub struct Outputs {
    /// Class id per pixel.
    pub mask: MonoImage,
    pub overlay: Option<RgbImage>,
    pub timings: StageTimings,
}
