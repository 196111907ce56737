//! The depth head's output tensor as a depth image in metres at the frame's size.

use candle_core::Tensor;
use opencv::core::{Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;

use crate::image::DepthImage;

/// The depth head's output (1, 1, H, W) metres, resized bilinearly to the frame's size (a
/// regressed surface is smooth, unlike class ids).
pub fn depth_output_to_image(
    output: &Tensor,
    width: u32,
    height: u32,
) -> Result<DepthImage, DepthOutputError> {
    let (_, _, h, w) = output.dims4()?;
    let values = output.flatten_all()?.to_vec1::<f32>()?;
    if (w as u32, h as u32) == (width, height) {
        return Ok(DepthImage {
            width,
            height,
            depth_m: values,
        });
    }
    let src = Mat::new_rows_cols_with_data(h as i32, w as i32, &values)?;
    let mut dst = Mat::default();
    imgproc::resize(
        &src,
        &mut dst,
        Size::new(width as i32, height as i32),
        0.0,
        0.0,
        imgproc::INTER_LINEAR,
    )?;
    Ok(DepthImage {
        width,
        height,
        depth_m: dst.data_typed::<f32>()?.to_vec(),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum DepthOutputError {
    #[error(transparent)]
    Network(#[from] candle_core::Error),
    #[error(transparent)]
    OpenCv(#[from] opencv::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn depth_is_resized_bilinearly_to_the_frame() {
        // A left-to-right ramp 1 m .. 2 m over 4 columns, twice as wide after resizing.
        let t = Tensor::new(
            &[[[[1.0f32, 1.0 + 1.0 / 3.0, 1.0 + 2.0 / 3.0, 2.0]]]],
            &Device::Cpu,
        )
        .unwrap();
        let out = depth_output_to_image(&t, 8, 2).unwrap();
        assert_eq!(out.depth_m.len(), 16);
        assert!((out.depth_m[0] - 1.0).abs() < 1e-5 && (out.depth_m[7] - 2.0).abs() < 1e-5);
        assert!(out.depth_m.windows(2).take(7).all(|p| p[1] >= p[0]));
        assert_eq!(out.depth_m[..8], out.depth_m[8..]);
        let same = depth_output_to_image(&t, 4, 1).unwrap();
        assert_eq!(same.depth_m[3], 2.0);
    }
}
