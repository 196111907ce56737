//! Classification data as one folder of PNG images per class (torchvision's `ImageFolder`).

use std::path::{Path, PathBuf};

use super::read_png_rgb;

/// A classification data set as folders of PNG images, one folder per class (torchvision's
/// `ImageFolder` layout): `root/<class>/<any name>.png`. Classes are the folder names in
/// sorted order; every image is resized (bilinear) to `width` x `height`.
pub struct ImageFolder {
    pub class_names: Vec<String>,
    /// Planar (N, C, H, W) values in [0, 1].
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
    /// C, H, W.
    pub shape: [usize; 3],
}

impl ImageFolder {
    /// `channels` 1 reads grey (the mean of R, G, B), 3 reads RGB.
    pub fn open(root: &Path, width: usize, height: usize, channels: usize) -> Result<Self, String> {
        if !matches!(channels, 1 | 3) || width == 0 || height == 0 {
            return Err(format!(
                "image folder {}: channels must be 1 or 3 and the size positive, got {channels} x {width} x {height}",
                root.display()
            ));
        }
        let entries = |dir: &Path| -> Result<Vec<PathBuf>, String> {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    !p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect();
            paths.sort();
            Ok(paths)
        };
        let class_dirs: Vec<PathBuf> = entries(root)?.into_iter().filter(|p| p.is_dir()).collect();
        if class_dirs.is_empty() {
            return Err(format!(
                "{} has no class folders; expected {}/<class>/<image>.png",
                root.display(),
                root.display()
            ));
        }
        let mut out = Self {
            class_names: Vec::new(),
            images: Vec::new(),
            labels: Vec::new(),
            shape: [channels, height, width],
        };
        for (label, dir) in class_dirs.iter().enumerate() {
            let files = entries(dir)?;
            if files.is_empty() {
                return Err(format!("class folder {} is empty", dir.display()));
            }
            for file in files {
                let is_png = file
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("png"));
                if !is_png || !file.is_file() {
                    return Err(format!(
                        "{} is not a PNG image; image folders hold PNG files only (convert it, or move it out)",
                        file.display()
                    ));
                }
                let (w, h, rgb) = read_png_rgb(&file)?;
                out.push(&rgb, w as usize, h as usize);
                out.labels.push(label as u32);
            }
            out.class_names.push(
                dir.file_name()
                    .expect("listed entry")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        Ok(out)
    }

    /// Appends one packed RGB image, resized, as planar channels.
    fn push(&mut self, rgb: &[u8], w: usize, h: usize) {
        let [channels, height, width] = self.shape;
        let resized = resize_bilinear(rgb, w, h, width, height);
        if channels == 3 {
            for c in 0..3 {
                self.images
                    .extend(resized.iter().skip(c).step_by(3).map(|&v| v / 255.0));
            }
        } else {
            self.images.extend(
                resized
                    .chunks_exact(3)
                    .map(|p| (p[0] + p[1] + p[2]) / (3.0 * 255.0)),
            );
        }
    }
}

/// Bilinear resize of packed RGB bytes (pixel centres aligned, as OpenCV's INTER_LINEAR).
pub fn resize_bilinear(rgb: &[u8], w: usize, h: usize, out_w: usize, out_h: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(out_w * out_h * 3);
    let (sx, sy) = (w as f64 / out_w as f64, h as f64 / out_h as f64);
    for y in 0..out_h {
        let fy = ((y as f64 + 0.5) * sy - 0.5).clamp(0.0, (h - 1) as f64);
        let (y0, ty) = (fy.floor() as usize, fy - fy.floor());
        let y1 = (y0 + 1).min(h - 1);
        for x in 0..out_w {
            let fx = ((x as f64 + 0.5) * sx - 0.5).clamp(0.0, (w - 1) as f64);
            let (x0, tx) = (fx.floor() as usize, fx - fx.floor());
            let x1 = (x0 + 1).min(w - 1);
            for c in 0..3 {
                let at = |xx: usize, yy: usize| rgb[(yy * w + xx) * 3 + c] as f64;
                let top = at(x0, y0) * (1.0 - tx) + at(x1, y0) * tx;
                let bottom = at(x0, y1) * (1.0 - tx) + at(x1, y1) * tx;
                out.push((top * (1.0 - ty) + bottom * ty) as f32);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, w: u32, h: u32, rgb: &[u8]) {
        let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
        let mut e = png::Encoder::new(file, w, h);
        e.set_color(png::ColorType::Rgb);
        e.set_depth(png::BitDepth::Eight);
        e.write_header().unwrap().write_image_data(rgb).unwrap();
    }

    #[test]
    fn reads_classes_in_order_resizes_and_names_bad_files() {
        let root =
            std::env::temp_dir().join(format!("perception-imgfolder-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (class, value) in [("b_dark", 10u8), ("a_light", 250u8)] {
            std::fs::create_dir_all(root.join(class)).unwrap();
            for i in 0..2 {
                write_png(
                    &root.join(class).join(format!("{i}.png")),
                    4,
                    2,
                    &[value; 24],
                );
            }
        }
        let set = ImageFolder::open(&root, 2, 2, 1).unwrap();
        assert_eq!(set.class_names, vec!["a_light", "b_dark"]);
        assert_eq!(set.labels, vec![0, 0, 1, 1]);
        assert_eq!(set.images.len(), 4 * 4);
        assert!((set.images[0] - 250.0 / 255.0).abs() < 1e-6);
        assert!((set.images[15] - 10.0 / 255.0).abs() < 1e-6);
        let rgb = ImageFolder::open(&root, 3, 3, 3).unwrap();
        assert_eq!(rgb.shape, [3, 3, 3]);
        std::fs::write(root.join("a_light").join("notes.txt"), "x").unwrap();
        let err = ImageFolder::open(&root, 2, 2, 1).err().unwrap();
        assert!(err.contains("notes.txt") && err.contains("PNG"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn bilinear_resize_keeps_constants_and_halves_a_ramp() {
        let flat = vec![7u8; 5 * 3 * 3];
        assert!(resize_bilinear(&flat, 5, 3, 2, 7)
            .iter()
            .all(|&v| (v - 7.0).abs() < 1e-5));
        // A 4-pixel ramp 0, 100, 200, 300-ish (capped) halved: means of neighbours.
        let ramp: Vec<u8> = [0u8, 100, 200, 250]
            .iter()
            .flat_map(|&v| [v, v, v])
            .collect();
        let half = resize_bilinear(&ramp, 4, 1, 2, 1);
        assert!(
            (half[0] - 50.0).abs() < 1e-4 && (half[3] - 225.0).abs() < 1e-4,
            "{half:?}"
        );
    }
}
