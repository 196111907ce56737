//! The coloured segmentation overlay: class colours blended over the camera image.

use crate::image::{MonoImage, RgbImage};

/// Blends class colours over the image: `(1 - alpha) * rgb + alpha * colour[class]` for every
/// class but 0 (background), which keeps the camera's pixels. Classes without a colour (ids
/// past the palette) are left unblended.
pub fn blend_overlay(
    rgb: &RgbImage,
    mask: &MonoImage,
    palette: &[[u8; 3]],
    alpha: f32,
) -> RgbImage {
    assert_eq!(
        (rgb.width, rgb.height),
        (mask.width, mask.height),
        "overlay needs a mask at image size"
    );
    let alpha = alpha.clamp(0.0, 1.0);
    let mut data = rgb.data.clone();
    for (pixel, &class) in data.chunks_exact_mut(3).zip(&mask.data) {
        if class == 0 {
            continue;
        }
        if let Some(colour) = palette.get(usize::from(class)) {
            for (p, c) in pixel.iter_mut().zip(colour) {
                *p = ((1.0 - alpha) * f32::from(*p) + alpha * f32::from(*c)).round() as u8;
            }
        }
    }
    RgbImage {
        width: rgb.width,
        height: rgb.height,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blends_objects_and_keeps_background() {
        let rgb = RgbImage {
            width: 3,
            height: 1,
            data: vec![100, 100, 100, 100, 100, 100, 100, 100, 100],
        };
        let mask = MonoImage {
            width: 3,
            height: 1,
            data: vec![0, 1, 9],
        };
        let out = blend_overlay(&rgb, &mask, &[[0, 0, 0], [255, 0, 0]], 0.5);
        assert_eq!(out.data, vec![100, 100, 100, 178, 50, 50, 100, 100, 100]);
    }
}
