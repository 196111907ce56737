//! `InputError`: why a received image cannot be used; the node logs, counts and skips such a
//! frame.

use thiserror::Error;

/// Why a received image cannot be used. Each message names the problem and how to fix it;
/// the node logs it at a limited rate, counts it and skips the frame.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum InputError {
    #[error("unsupported image encoding '{encoding}' on the {topic} input: supported are {supported}; convert the stream upstream or remap the topic to one with a supported encoding")]
    UnknownEncoding {
        topic: &'static str,
        encoding: String,
        supported: &'static str,
    },
    #[error("image has zero size ({width}x{height}): the publisher sent an empty image; check the camera driver")]
    ZeroSize { width: u32, height: u32 },
    #[error("image of {width}x{height} pixels exceeds max_image_pixels = {max_pixels}: raise the parameter or downscale the stream upstream")]
    TooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    #[error("image step {step} bytes is smaller than one row of {width} {encoding} pixels ({min_step} bytes): the publisher filled `step` wrongly")]
    StepTooSmall {
        step: u32,
        min_step: u64,
        width: u32,
        encoding: String,
    },
    #[error("image data holds {len} bytes, but step {step} x height {height} needs {expected}: the message is truncated")]
    DataTooShort {
        len: usize,
        expected: u64,
        step: u32,
        height: u32,
    },
    #[error("depth image is {depth_width}x{depth_height} but the colour image is {image_width}x{image_height}: publish registered depth (same size as the colour image), e.g. from the driver's aligned-depth topic")]
    DepthSizeMismatch {
        depth_width: u32,
        depth_height: u32,
        image_width: u32,
        image_height: u32,
    },
    #[error("OpenCV failed on a valid-looking image: {0}")]
    OpenCv(String),
}

impl From<opencv::Error> for InputError {
    fn from(e: opencv::Error) -> Self {
        InputError::OpenCv(e.to_string())
    }
}
