//! Segmentation logits to a class mask (arg-max) and nearest-neighbour resizing of masks.

use candle_core::{DType, Tensor};
use opencv::core::{Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;

use crate::image::MonoImage;

/// Per-pixel arg-max over classes.
///
/// # Shapes
/// - `logits`: (1, K, H, W), K <= 256
/// - returns: H x W class ids
pub fn logits_to_class_mask(logits: &Tensor) -> candle_core::Result<MonoImage> {
    let (_, _, h, w) = logits.dims4()?;
    let ids = logits
        .argmax(1)?
        .to_dtype(DType::U8)?
        .flatten_all()?
        .to_vec1::<u8>()?;
    Ok(MonoImage {
        width: w as u32,
        height: h as u32,
        data: ids,
    })
}

/// Nearest-neighbour resize: class ids must not be interpolated into other classes.
pub fn resize_mask_nearest(mask: &MonoImage, width: u32, height: u32) -> opencv::Result<MonoImage> {
    if mask.width == width && mask.height == height {
        return Ok(mask.clone());
    }
    let src = Mat::new_rows_cols_with_data(mask.height as i32, mask.width as i32, &mask.data)?;
    let mut dst = Mat::default();
    imgproc::resize(
        &src,
        &mut dst,
        Size::new(width as i32, height as i32),
        0.0,
        0.0,
        imgproc::INTER_NEAREST,
    )?;
    Ok(MonoImage {
        width,
        height,
        data: dst.data_bytes()?.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn argmax_picks_the_highest_logit_per_pixel() {
        // 3 classes, 1x2 image: pixel 0 -> class 2, pixel 1 -> class 0.
        let logits = Tensor::from_vec(
            vec![0.1f32, 5.0, -1.0, 0.0, 3.0, 1.0],
            (1, 3, 1, 2),
            &Device::Cpu,
        )
        .unwrap();
        let mask = logits_to_class_mask(&logits).unwrap();
        assert_eq!(mask.data, vec![2, 0]);
    }

    #[test]
    fn nearest_resize_only_produces_existing_classes() {
        let mask = MonoImage {
            width: 2,
            height: 2,
            data: vec![0, 3, 1, 2],
        };
        let big = resize_mask_nearest(&mask, 5, 3).unwrap();
        assert_eq!((big.width, big.height), (5, 3));
        assert!(big.data.iter().all(|c| [0, 1, 2, 3].contains(c)));
        assert_eq!(big.pixel(0, 0), 0);
        assert_eq!(big.pixel(4, 0), 3);
        assert_eq!(big.pixel(4, 2), 2);
    }
}
