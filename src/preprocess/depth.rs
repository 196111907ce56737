//! Decoding a depth image message (16UC1 millimetres or 32FC1 metres, REP 118) into metres with
//! NaN where there is no reading.

use opencv::core::{Mat, CV_32F};
use opencv::prelude::*;

use super::{DepthEncoding, InputError, RawImage};
use crate::image::{DepthImage, RgbImage};

/// Metres per unit of a 16UC1 depth image (REP 118: millimetres).
const METRES_PER_MILLIMETRE: f64 = 1e-3;

/// Decodes 16UC1/mono16 (millimetres) or 32FC1 (metres) depth with any row padding and either
/// byte order into metres, NaN where the sensor had no measurement (0, NaN, inf or negative).
pub fn decode_depth(raw: &RawImage<'_>, max_pixels: u64) -> Result<DepthImage, InputError> {
    let encoding = DepthEncoding::parse(raw.encoding)?;
    let bytes_per_pixel = encoding.bytes_per_pixel();
    raw.validate(bytes_per_pixel, max_pixels)?;
    let repacked;
    let swap = raw.is_bigendian != cfg!(target_endian = "big");
    // OpenCV needs a step that is a multiple of the element size; ROS only promises bytes.
    let misaligned = raw.step % bytes_per_pixel != 0;
    let raw = if swap || misaligned {
        repacked = repack_rows(raw, bytes_per_pixel as usize, swap);
        RawImage {
            data: &repacked,
            step: raw.width * bytes_per_pixel,
            ..*raw
        }
    } else {
        *raw
    };
    let src = raw.as_mat(encoding.opencv_type())?;
    let scale = match encoding {
        DepthEncoding::U16Millimetres => METRES_PER_MILLIMETRE,
        DepthEncoding::F32Metres => 1.0,
    };
    let mut metres = Mat::default();
    src.convert_to(&mut metres, CV_32F, scale, 0.0)?;
    let depth_m = metres
        .data_typed::<f32>()?
        .iter()
        .map(|&d| {
            if d.is_finite() && d > 0.0 {
                d
            } else {
                f32::NAN
            }
        })
        .collect();
    Ok(DepthImage {
        width: raw.width,
        height: raw.height,
        depth_m,
    })
}

/// Depth must be registered to the colour image: same size, pixel for pixel.
pub fn check_depth_matches(depth: &DepthImage, rgb: &RgbImage) -> Result<(), InputError> {
    if depth.width != rgb.width || depth.height != rgb.height {
        return Err(InputError::DepthSizeMismatch {
            depth_width: depth.width,
            depth_height: depth.height,
            image_width: rgb.width,
            image_height: rgb.height,
        });
    }
    Ok(())
}

/// The pixels without row padding, each pixel's bytes reversed when `swap`.
fn repack_rows(raw: &RawImage<'_>, bytes_per_pixel: usize, swap: bool) -> Vec<u8> {
    let row_bytes = raw.width as usize * bytes_per_pixel;
    let mut data = Vec::with_capacity(row_bytes * raw.height as usize);
    for row in raw.data.chunks(raw.step as usize).take(raw.height as usize) {
        data.extend_from_slice(&row[..row_bytes]);
    }
    if swap {
        for pixel in data.chunks_exact_mut(bytes_per_pixel) {
            pixel.reverse();
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millimetres_become_metres_and_zero_becomes_nan() {
        // 2x2, step 6 (2 bytes padding per row).
        let mut data = Vec::new();
        for row in [[1500u16, 0], [65535, 250]] {
            for v in row {
                data.extend(v.to_le_bytes());
            }
            data.extend([0xAB, 0xCD]);
        }
        let raw = RawImage {
            width: 2,
            height: 2,
            encoding: "16UC1",
            is_bigendian: false,
            step: 6,
            data: &data,
        };
        let depth = decode_depth(&raw, u64::MAX).unwrap();
        assert!((depth.depth_m[0] - 1.5).abs() < 1e-6);
        assert!(depth.depth_m[1].is_nan());
        assert!((depth.depth_m[2] - 65.535).abs() < 1e-4);
        assert!((depth.depth_m[3] - 0.25).abs() < 1e-6);
    }

    #[test]
    fn big_endian_16uc1_is_swapped() {
        let data: Vec<u8> = [1000u16, 2000]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        let raw = RawImage {
            width: 2,
            height: 1,
            encoding: "16UC1",
            is_bigendian: true,
            step: 4,
            data: &data,
        };
        let depth = decode_depth(&raw, u64::MAX).unwrap();
        assert_eq!(depth.depth_m, vec![1.0, 2.0]);
    }

    #[test]
    fn float_rows_with_a_step_not_a_multiple_of_four() {
        let mut data = Vec::new();
        for row in [[1.0f32, 2.0], [3.0, 4.0]] {
            data.extend(row.iter().flat_map(|v| v.to_le_bytes()));
            data.extend([0, 0]);
        }
        let raw = RawImage {
            width: 2,
            height: 2,
            encoding: "32FC1",
            is_bigendian: false,
            step: 10,
            data: &data,
        };
        assert_eq!(
            decode_depth(&raw, u64::MAX).unwrap().depth_m,
            vec![1.0, 2.0, 3.0, 4.0]
        );
    }

    #[test]
    fn float_metres_keep_values_and_invalid_become_nan() {
        let values = [0.75f32, f32::NAN, f32::INFINITY, -1.0, 0.0, 3.25];
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let raw = RawImage {
            width: 3,
            height: 2,
            encoding: "32FC1",
            is_bigendian: false,
            step: 12,
            data: &data,
        };
        let depth = decode_depth(&raw, u64::MAX).unwrap();
        assert_eq!(depth.depth_m[0], 0.75);
        assert_eq!(depth.depth_m[5], 3.25);
        assert!(depth.depth_m[1..5].iter().all(|d| d.is_nan()));
    }

    #[test]
    fn depth_of_another_size_is_rejected() {
        let depth = DepthImage {
            width: 4,
            height: 3,
            depth_m: vec![1.0; 12],
        };
        let rgb = RgbImage {
            width: 4,
            height: 4,
            data: vec![0; 48],
        };
        assert!(matches!(
            check_depth_matches(&depth, &rgb),
            Err(InputError::DepthSizeMismatch { .. })
        ));
    }
}
