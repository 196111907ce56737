//! Decoding a colour image message (rgb8, bgr8, rgba8, bgra8, mono8, any row padding) into packed
//! RGB.

use opencv::core::{Mat, CV_8UC3};
use opencv::imgproc;
use opencv::prelude::*;

use super::{ColorEncoding, InputError, RawImage};
use crate::image::RgbImage;

/// Decodes an rgb8, bgr8, rgba8, bgra8 or mono8 image with any row padding into packed RGB.
pub fn decode_color(raw: &RawImage<'_>, max_pixels: u64) -> Result<RgbImage, InputError> {
    let encoding = ColorEncoding::parse(raw.encoding)?;
    raw.validate(encoding.bytes_per_pixel(), max_pixels)?;
    let src = raw.as_mat(encoding.opencv_type())?;
    let code = match encoding {
        ColorEncoding::Rgb8 => None,
        ColorEncoding::Bgr8 => Some(imgproc::COLOR_BGR2RGB),
        ColorEncoding::Rgba8 => Some(imgproc::COLOR_RGBA2RGB),
        ColorEncoding::Bgra8 => Some(imgproc::COLOR_BGRA2RGB),
        ColorEncoding::Mono8 => Some(imgproc::COLOR_GRAY2RGB),
    };
    let mut rgb = Mat::default();
    match code {
        Some(code) => imgproc::cvt_color_def(&src, &mut rgb, code)?,
        // copy_to drops the row padding: the destination is allocated continuous.
        None => src.copy_to(&mut rgb)?,
    }
    debug_assert_eq!(rgb.typ(), CV_8UC3);
    Ok(RgbImage {
        width: raw.width,
        height: raw.height,
        data: rgb.data_bytes()?.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3x2 image with distinct pixels, laid out for `encoding` with `pad` bytes per row.
    fn encode(encoding: &str, pad: usize) -> (Vec<u8>, u32) {
        let pixels: [[u8; 3]; 6] = [
            [10, 20, 30],
            [40, 50, 60],
            [70, 80, 90],
            [1, 2, 3],
            [4, 5, 6],
            [7, 8, 9],
        ];
        let mut data = Vec::new();
        for row in pixels.chunks(3) {
            for &[r, g, b] in row {
                match encoding {
                    "rgb8" => data.extend([r, g, b]),
                    "bgr8" => data.extend([b, g, r]),
                    "rgba8" => data.extend([r, g, b, 255]),
                    "bgra8" => data.extend([b, g, r, 255]),
                    "mono8" => data.push(r),
                    _ => unreachable!(),
                }
            }
            data.extend(std::iter::repeat(0xEE).take(pad));
        }
        let step = data.len() as u32 / 2;
        (data, step)
    }

    #[test]
    fn every_encoding_with_and_without_padding_gives_the_same_rgb() {
        let expected = vec![
            10, 20, 30, 40, 50, 60, 70, 80, 90, 1, 2, 3, 4, 5, 6, 7, 8, 9,
        ];
        for encoding in ["rgb8", "bgr8", "rgba8", "bgra8"] {
            for pad in [0, 1, 7] {
                let (data, step) = encode(encoding, pad);
                let raw = RawImage {
                    width: 3,
                    height: 2,
                    encoding,
                    is_bigendian: false,
                    step,
                    data: &data,
                };
                let rgb = decode_color(&raw, u64::MAX).unwrap();
                assert_eq!(rgb.data, expected, "{encoding} pad {pad}");
            }
        }
    }

    #[test]
    fn mono8_is_replicated_to_three_channels() {
        let (data, step) = encode("mono8", 5);
        let raw = RawImage {
            width: 3,
            height: 2,
            encoding: "mono8",
            is_bigendian: false,
            step,
            data: &data,
        };
        let rgb = decode_color(&raw, u64::MAX).unwrap();
        assert_eq!(rgb.pixel(1, 1), [4, 4, 4]);
        assert_eq!(rgb.pixel(2, 0), [70, 70, 70]);
    }

    #[test]
    fn truncated_data_is_an_error_not_a_read_past_the_end() {
        let (data, step) = encode("rgb8", 2);
        let raw = RawImage {
            width: 3,
            height: 2,
            encoding: "rgb8",
            is_bigendian: false,
            step,
            data: &data[..data.len() - 1],
        };
        assert!(matches!(
            decode_color(&raw, u64::MAX),
            Err(InputError::DataTooShort { .. })
        ));
    }
}
