//! Reading an 8-bit PNG of any channel layout as packed RGB.

use std::path::Path;

/// Reads an 8-bit PNG (grey, grey+alpha, RGB or RGBA) as packed RGB.
pub fn read_png_rgb(path: &Path) -> Result<(u32, u32, Vec<u8>), String> {
    let fail = |e: &dyn std::fmt::Display| format!("cannot read image {}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(|e| fail(&e))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| fail(&e))?;
    let mut buf = vec![
        0;
        reader
            .output_buffer_size()
            .ok_or_else(|| fail(&"image too large"))?
    ];
    let info = reader.next_frame(&mut buf).map_err(|e| fail(&e))?;
    let channels = info.color_type.samples();
    let pixels = (info.width * info.height) as usize;
    let rgb = (0..pixels)
        .flat_map(|i| {
            let px = &buf[i * channels..(i + 1) * channels];
            match channels {
                1 | 2 => [px[0], px[0], px[0]],
                _ => [px[0], px[1], px[2]],
            }
        })
        .collect();
    Ok((info.width, info.height, rgb))
}
