//! `RawImage`: a borrowed, not yet validated view of an image message, and the checks on its
//! size, step and encoding.

use std::ffi::c_void;

use opencv::core::{Mat, CV_16UC1, CV_32FC1, CV_8UC1, CV_8UC3, CV_8UC4};

use super::InputError;

/// A borrowed view of a sensor_msgs/Image: what the wire carries, not yet trusted.
#[derive(Clone, Copy, Debug)]
pub struct RawImage<'a> {
    pub width: u32,
    pub height: u32,
    pub encoding: &'a str,
    pub is_bigendian: bool,
    /// Bytes per row, padding included.
    pub step: u32,
    pub data: &'a [u8],
}

/// The colour encodings the node accepts (sensor_msgs/image_encodings names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorEncoding {
    Rgb8,
    Bgr8,
    Rgba8,
    Bgra8,
    Mono8,
}

/// The depth encodings of REP 118.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DepthEncoding {
    /// 16-bit unsigned millimetres, 0 = no measurement ("16UC1" or "mono16").
    U16Millimetres,
    /// 32-bit float metres, NaN or 0 = no measurement ("32FC1").
    F32Metres,
}

pub(crate) const COLOR_ENCODINGS: &str = "rgb8, bgr8, rgba8, bgra8, mono8";
pub(crate) const DEPTH_ENCODINGS: &str =
    "16UC1 (millimetres), mono16 (millimetres), 32FC1 (metres)";

impl ColorEncoding {
    pub fn parse(encoding: &str) -> Result<Self, InputError> {
        Ok(match encoding {
            "rgb8" => Self::Rgb8,
            "bgr8" => Self::Bgr8,
            "rgba8" => Self::Rgba8,
            "bgra8" => Self::Bgra8,
            "mono8" => Self::Mono8,
            _ => {
                return Err(InputError::UnknownEncoding {
                    topic: "image",
                    encoding: encoding.to_owned(),
                    supported: COLOR_ENCODINGS,
                })
            }
        })
    }

    pub fn bytes_per_pixel(self) -> u32 {
        match self {
            Self::Rgb8 | Self::Bgr8 => 3,
            Self::Rgba8 | Self::Bgra8 => 4,
            Self::Mono8 => 1,
        }
    }

    pub(crate) fn opencv_type(self) -> i32 {
        match self {
            Self::Rgb8 | Self::Bgr8 => CV_8UC3,
            Self::Rgba8 | Self::Bgra8 => CV_8UC4,
            Self::Mono8 => CV_8UC1,
        }
    }
}

impl DepthEncoding {
    pub fn parse(encoding: &str) -> Result<Self, InputError> {
        match encoding {
            "16UC1" | "mono16" => Ok(Self::U16Millimetres),
            "32FC1" => Ok(Self::F32Metres),
            _ => Err(InputError::UnknownEncoding {
                topic: "depth",
                encoding: encoding.to_owned(),
                supported: DEPTH_ENCODINGS,
            }),
        }
    }

    pub fn bytes_per_pixel(self) -> u32 {
        match self {
            Self::U16Millimetres => 2,
            Self::F32Metres => 4,
        }
    }

    pub(crate) fn opencv_type(self) -> i32 {
        match self {
            Self::U16Millimetres => CV_16UC1,
            Self::F32Metres => CV_32FC1,
        }
    }
}

impl RawImage<'_> {
    /// Checks size, step and data length for `bytes_per_pixel`; what every decoder relies on.
    pub fn validate(&self, bytes_per_pixel: u32, max_pixels: u64) -> Result<(), InputError> {
        if self.width == 0 || self.height == 0 {
            return Err(InputError::ZeroSize {
                width: self.width,
                height: self.height,
            });
        }
        if u64::from(self.width) * u64::from(self.height) > max_pixels {
            return Err(InputError::TooLarge {
                width: self.width,
                height: self.height,
                max_pixels,
            });
        }
        let min_step = u64::from(self.width) * u64::from(bytes_per_pixel);
        if u64::from(self.step) < min_step {
            return Err(InputError::StepTooSmall {
                step: self.step,
                min_step,
                width: self.width,
                encoding: self.encoding.to_owned(),
            });
        }
        let expected = u64::from(self.step) * u64::from(self.height);
        if (self.data.len() as u64) < expected {
            return Err(InputError::DataTooShort {
                len: self.data.len(),
                expected,
                step: self.step,
                height: self.height,
            });
        }
        Ok(())
    }

    /// An OpenCV header over the borrowed bytes, honouring `step` (row padding).
    ///
    /// Call only after [`RawImage::validate`] succeeded for the same `typ`'s pixel size.
    pub(crate) fn as_mat(&self, typ: i32) -> Result<Mat, InputError> {
        // SAFETY: validate() proved data.len() >= step * height and step >= width * pixel size,
        // so every row OpenCV may read lies inside `data`. The Mat does not own the bytes; it is
        // only read (as a conversion source) while `self.data` is borrowed.
        let mat = unsafe {
            Mat::new_rows_cols_with_data_unsafe(
                self.height as i32,
                self.width as i32,
                typ,
                self.data.as_ptr().cast::<c_void>().cast_mut(),
                self.step as usize,
            )?
        };
        Ok(mat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(width: u32, height: u32, step: u32, data: &[u8]) -> RawImage<'_> {
        RawImage {
            width,
            height,
            encoding: "rgb8",
            is_bigendian: false,
            step,
            data,
        }
    }

    #[test]
    fn validation_names_each_malformation() {
        let data = vec![0u8; 64];
        assert!(matches!(
            raw(0, 2, 0, &data).validate(3, 100),
            Err(InputError::ZeroSize { .. })
        ));
        assert!(matches!(
            raw(4, 2, 11, &data).validate(3, 100),
            Err(InputError::StepTooSmall { min_step: 12, .. })
        ));
        assert!(matches!(
            raw(4, 6, 12, &data).validate(3, 100),
            Err(InputError::DataTooShort { expected: 72, .. })
        ));
        assert!(matches!(
            raw(11, 10, 33, &data).validate(3, 100),
            Err(InputError::TooLarge { .. })
        ));
        assert!(raw(4, 2, 16, &data).validate(3, 100).is_ok());
    }

    #[test]
    fn encodings_parse_and_reject() {
        assert_eq!(ColorEncoding::parse("bgra8").unwrap().bytes_per_pixel(), 4);
        assert_eq!(
            DepthEncoding::parse("16UC1").unwrap(),
            DepthEncoding::U16Millimetres
        );
        let err = ColorEncoding::parse("yuv422").unwrap_err().to_string();
        assert!(err.contains("yuv422") && err.contains("rgb8"), "{err}");
        assert!(DepthEncoding::parse("rgb8").is_err());
    }
}
