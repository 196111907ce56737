//! Owned, packed images exchanged between the layers. Row-major, no row padding.

/// An 8-bit RGB image, 3 bytes per pixel.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    /// `height * width * 3` bytes, R then G then B.
    pub data: Vec<u8>,
}

/// A single-channel 8-bit image (class ids of a segmentation mask).
#[derive(Clone, Debug, PartialEq)]
pub struct MonoImage {
    pub width: u32,
    pub height: u32,
    /// `height * width` bytes.
    pub data: Vec<u8>,
}

/// Depth in metres along the optical axis, NaN where invalid (REP 118).
#[derive(Clone, Debug)]
pub struct DepthImage {
    pub width: u32,
    pub height: u32,
    /// `height * width` values, metres.
    pub depth_m: Vec<f32>,
}

/// Pinhole intrinsics of the camera that took a frame, from sensor_msgs/CameraInfo's K.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CameraIntrinsics {
    pub width: u32,
    pub height: u32,
    pub fx_px: f64,
    pub fy_px: f64,
    pub cx_px: f64,
    pub cy_px: f64,
}

impl RgbImage {
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}

impl MonoImage {
    pub fn pixel(&self, x: u32, y: u32) -> u8 {
        self.data[y as usize * self.width as usize + x as usize]
    }
}
