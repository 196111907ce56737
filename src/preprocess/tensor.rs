//! Images into network input tensors: resizing, per-channel normalisation (from `model.yaml`)
//! and the planar layout.

use candle_core::{Device, Tensor};
use opencv::core::{Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;
use serde::{Deserialize, Serialize};

use super::InputError;
use crate::image::RgbImage;

/// Per-channel normalisation of RGB scaled to [0, 1]: `(x - mean) / std`. Estimated on the
/// training split and stored in the model's `model.yaml`, so inference applies exactly it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for Normalization {
    fn default() -> Self {
        Self {
            mean: [0.0; 3],
            std: [1.0; 3],
        }
    }
}

/// Resizes with area averaging when shrinking (no aliasing) and bilinear when enlarging.
pub fn resize_rgb(rgb: &RgbImage, width: u32, height: u32) -> Result<RgbImage, InputError> {
    if rgb.width == width && rgb.height == height {
        return Ok(rgb.clone());
    }
    let src = Mat::new_rows_cols_with_bytes::<opencv::core::Vec3b>(
        rgb.height as i32,
        rgb.width as i32,
        &rgb.data,
    )?;
    let shrinking = width < rgb.width || height < rgb.height;
    let interpolation = if shrinking {
        imgproc::INTER_AREA
    } else {
        imgproc::INTER_LINEAR
    };
    let mut dst = Mat::default();
    imgproc::resize(
        &src,
        &mut dst,
        Size::new(width as i32, height as i32),
        0.0,
        0.0,
        interpolation,
    )?;
    Ok(RgbImage {
        width,
        height,
        data: dst.data_bytes()?.to_vec(),
    })
}

/// Packed RGB -> normalised `(1, 3, H, W)` f32 tensor on `device`.
///
/// # Shapes
/// - `rgb`: H x W x 3 bytes
/// - returns: (1, 3, H, W)
pub fn rgb_to_input_tensor(
    rgb: &RgbImage,
    normalization: &Normalization,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let plane = rgb.width as usize * rgb.height as usize;
    let mut chw = vec![0f32; 3 * plane];
    for (i, pixel) in rgb.data.chunks_exact(3).enumerate() {
        for c in 0..3 {
            let x = f32::from(pixel[c]) / 255.0;
            chw[c * plane + i] = (x - normalization.mean[c]) / normalization.std[c];
        }
    }
    Tensor::from_vec(chw, (1, 3, rgb.height as usize, rgb.width as usize), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_is_channel_first_and_normalised() {
        let rgb = RgbImage {
            width: 2,
            height: 1,
            data: vec![255, 0, 51, 0, 255, 102],
        };
        let norm = Normalization {
            mean: [0.5, 0.5, 0.0],
            std: [0.5, 0.5, 0.2],
        };
        let t = rgb_to_input_tensor(&rgb, &norm, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[1, 3, 1, 2]);
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let expected = [1.0, -1.0, -1.0, 1.0, 1.0, 2.0];
        for (a, b) in v.iter().zip(expected) {
            assert!((a - b).abs() < 1e-5, "{v:?}");
        }
    }

    #[test]
    fn area_resize_of_a_uniform_block_averages() {
        // 4x2 image: left half 100, right half 200 -> 2x1 keeps the two halves.
        let mut data = Vec::new();
        for _ in 0..2 {
            for x in 0..4 {
                let v = if x < 2 { 100 } else { 200 };
                data.extend([v, v, v]);
            }
        }
        let rgb = RgbImage {
            width: 4,
            height: 2,
            data,
        };
        let small = resize_rgb(&rgb, 2, 1).unwrap();
        assert_eq!(small.data, vec![100, 100, 100, 200, 200, 200]);
    }
}
