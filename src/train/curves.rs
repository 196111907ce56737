//! `curves.png` in the run folder: the loss curves (training and validation) and the
//! validation score per epoch, redrawn after every epoch so a person can watch a run.
//! Drawn here (axes, lines, a 3x5 pixel font) to need no plotting library.
use std::path::Path;

use crate::models::replace_file;

const WIDTH: usize = 1000;
const HEIGHT: usize = 380;
const PANEL_W: usize = 420;
const PANEL_H: usize = 270;
const TRAIN: [u8; 3] = [31, 119, 180];
const VALIDATION: [u8; 3] = [255, 127, 14];
const SCORE: [u8; 3] = [44, 160, 44];
const INK: [u8; 3] = [40, 40, 40];
const GRID: [u8; 3] = [225, 225, 225];

/// One row of `log.csv`, the part the curves show.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochRow {
    pub epoch: usize,
    pub train_loss: f64,
    pub validation_loss: f64,
    pub validation_score: f64,
}

struct Canvas {
    pixels: Vec<u8>,
}

impl Canvas {
    fn new() -> Self {
        Self {
            pixels: vec![255; WIDTH * HEIGHT * 3],
        }
    }

    fn dot(&mut self, x: i64, y: i64, color: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < WIDTH && (y as usize) < HEIGHT {
            let i = (y as usize * WIDTH + x as usize) * 3;
            self.pixels[i..i + 3].copy_from_slice(&color);
        }
    }

    /// A line two pixels thick (Bresenham, doubled).
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), color: [u8; 3], thick: bool) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.dot(x, y, color);
            if thick {
                self.dot(x + 1, y, color);
                self.dot(x, y + 1, color);
            }
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Text in the 3x5 font at twice its size; unknown characters draw as blanks.
    fn text(&mut self, x: i64, y: i64, text: &str, color: [u8; 3]) {
        for (k, ch) in text.chars().enumerate() {
            let rows = glyph(ch.to_ascii_uppercase());
            for (r, bits) in rows.iter().enumerate() {
                for c in 0..3 {
                    if bits & (4 >> c) != 0 {
                        let (px, py) = (x + k as i64 * 8 + c as i64 * 2, y + r as i64 * 2);
                        for (ox, oy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                            self.dot(px + ox, py + oy, color);
                        }
                    }
                }
            }
        }
    }
}

/// Rows of 3 bits, top to bottom.
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        '+' => [0, 2, 7, 2, 0],
        '(' => [2, 4, 4, 4, 2],
        ')' => [2, 1, 1, 1, 2],
        '/' => [1, 1, 2, 4, 4],
        '<' => [1, 2, 4, 2, 1],
        ':' => [0, 2, 0, 2, 0],
        'A' => [2, 5, 7, 5, 5],
        'B' => [6, 5, 6, 5, 6],
        'C' => [3, 4, 4, 4, 3],
        'D' => [6, 5, 5, 5, 6],
        'E' => [7, 4, 6, 4, 7],
        'F' => [7, 4, 6, 4, 4],
        'G' => [3, 4, 5, 5, 3],
        'H' => [5, 5, 7, 5, 5],
        'I' => [7, 2, 2, 2, 7],
        'J' => [1, 1, 1, 5, 2],
        'K' => [5, 5, 6, 5, 5],
        'L' => [4, 4, 4, 4, 7],
        'M' => [5, 7, 7, 5, 5],
        'N' => [6, 5, 5, 5, 5],
        'O' => [2, 5, 5, 5, 2],
        'P' => [6, 5, 6, 4, 4],
        'Q' => [2, 5, 5, 6, 3],
        'R' => [6, 5, 6, 5, 5],
        'S' => [3, 4, 2, 1, 6],
        'T' => [7, 2, 2, 2, 2],
        'U' => [5, 5, 5, 5, 7],
        'V' => [5, 5, 5, 5, 2],
        'W' => [5, 5, 7, 7, 5],
        'X' => [5, 5, 2, 5, 5],
        'Y' => [5, 5, 2, 2, 2],
        'Z' => [7, 1, 2, 4, 7],
        _ => [0; 5],
    }
}

/// A short tick label: 3 significant digits, exponent form for very small or large values.
fn label(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e5) {
        format!("{v:.1e}").to_uppercase()
    } else {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s.is_empty() || s == "-" {
            "0".into()
        } else {
            s.into()
        }
    }
}

/// One panel: frame, horizontal grid with value labels, epoch ticks, the series.
fn panel(
    canvas: &mut Canvas,
    origin: (i64, i64),
    title: &str,
    epochs: &[usize],
    series: &[(&str, [u8; 3], Vec<f64>)],
) {
    let (x0, y0) = origin;
    let (w, h) = (PANEL_W as i64, PANEL_H as i64);
    canvas.text(x0, y0 - 40, title, INK);
    let finite: Vec<f64> = series
        .iter()
        .flat_map(|s| s.2.iter().copied())
        .filter(|v| v.is_finite())
        .collect();
    let (mut lo, mut hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        (lo, hi) = (lo - 0.5, hi + 0.5);
    }
    let pad = (hi - lo) * 0.05;
    let (lo, hi) = (lo - pad, hi + pad);
    let last = *epochs.last().unwrap_or(&1) as f64;
    let first = *epochs.first().unwrap_or(&1) as f64;
    let span = (last - first).max(1.0);
    let px = |e: f64| x0 + ((e - first) / span * (w - 1) as f64).round() as i64;
    let py = |v: f64| y0 + h - 1 - ((v - lo) / (hi - lo) * (h - 1) as f64).round() as i64;
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        let y = py(v);
        canvas.line((x0, y), (x0 + w - 1, y), GRID, false);
        let text = label(v);
        canvas.text(x0 - 8 * text.len() as i64 - 6, y - 5, &text, INK);
    }
    let step = (epochs.len() / 8).max(1);
    for &e in epochs.iter().step_by(step) {
        let x = px(e as f64);
        canvas.line((x, y0 + h - 1), (x, y0 + h + 4), INK, false);
        let text = e.to_string();
        canvas.text(x - 4 * text.len() as i64, y0 + h + 8, &text, INK);
    }
    canvas.text(x0 + w / 2 - 20, y0 + h + 24, "EPOCH", INK);
    for (a, b) in [
        ((x0, y0), (x0 + w - 1, y0)),
        ((x0, y0 + h - 1), (x0 + w - 1, y0 + h - 1)),
        ((x0, y0), (x0, y0 + h - 1)),
        ((x0 + w - 1, y0), (x0 + w - 1, y0 + h - 1)),
    ] {
        canvas.line(a, b, INK, false);
    }
    for (k, (name, color, values)) in series.iter().enumerate() {
        let points: Vec<(i64, i64)> = epochs
            .iter()
            .zip(values)
            .filter(|(_, v)| v.is_finite())
            .map(|(&e, &v)| (px(e as f64), py(v)))
            .collect();
        for pair in points.windows(2) {
            canvas.line(pair[0], pair[1], *color, true);
        }
        for &(x, y) in &points {
            for d in -2..=2 {
                canvas.dot(x + d, y, *color);
                canvas.dot(x, y + d, *color);
            }
        }
        // Legend in the panel's top-left corner.
        let ly = y0 + 8 + 16 * k as i64;
        for d in 0..10 {
            canvas.line((x0 + 8, ly + d), (x0 + 24, ly + d), *color, false);
        }
        canvas.text(x0 + 30, ly, name, INK);
    }
}

/// Renders the curves of `rows` as an RGB image (`WIDTH` x `HEIGHT`).
pub fn render_curves(rows: &[EpochRow], score_name: &str) -> (Vec<u8>, u32, u32) {
    let mut canvas = Canvas::new();
    let epochs: Vec<usize> = rows.iter().map(|r| r.epoch).collect();
    panel(
        &mut canvas,
        (70, 50),
        "LOSS",
        &epochs,
        &[
            ("TRAIN", TRAIN, rows.iter().map(|r| r.train_loss).collect()),
            (
                "VALIDATION",
                VALIDATION,
                rows.iter().map(|r| r.validation_loss).collect(),
            ),
        ],
    );
    panel(
        &mut canvas,
        (70 + PANEL_W as i64 + 80, 50),
        &format!("VALIDATION {score_name}"),
        &epochs,
        &[(
            score_name,
            SCORE,
            rows.iter().map(|r| r.validation_score).collect(),
        )],
    );
    (canvas.pixels, WIDTH as u32, HEIGHT as u32)
}

/// Writes `curves.png` into `run` atomically (a reader never sees half a file).
pub fn write_curves(run: &Path, rows: &[EpochRow], score_name: &str) -> std::io::Result<()> {
    let (pixels, w, h) = render_curves(rows, score_name);
    write_rgb_png(&run.join("curves.png"), &pixels, w, h)
}

/// Writes an 8-bit RGB image as PNG: a temporary file beside `path`, then renamed over it.
pub fn write_rgb_png(path: &Path, rgb: &[u8], width: u32, height: u32) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        let mut encoder = png::Encoder::new(file, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .write_header()
            .and_then(|mut writer| writer.write_image_data(rgb))
            .map_err(std::io::Error::other)?;
    }
    replace_file(&tmp, path).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<EpochRow> {
        (1..=6)
            .map(|e| EpochRow {
                epoch: e,
                train_loss: 1.0 / e as f64,
                validation_loss: 1.2 / e as f64,
                validation_score: 0.5 + 0.05 * e as f64,
            })
            .collect()
    }

    fn count(pixels: &[u8], color: [u8; 3]) -> usize {
        pixels.chunks_exact(3).filter(|p| *p == color).count()
    }

    #[test]
    fn curves_draw_every_series_and_fall_where_the_values_say() {
        let (pixels, w, h) = render_curves(&rows(), "MIOU");
        assert_eq!(pixels.len(), (w * h * 3) as usize);
        for color in [TRAIN, VALIDATION, SCORE] {
            assert!(count(&pixels, color) > 200, "{color:?}");
        }
        // The training loss falls: its first point is higher (smaller y) than its last.
        let column_rows = |x: usize| -> Vec<usize> {
            (0..h as usize)
                .filter(|&y| pixels[(y * w as usize + x) * 3..][..3] == TRAIN)
                .collect()
        };
        let first = column_rows(70);
        let last = column_rows(70 + PANEL_W - 1);
        assert!(!first.is_empty() && !last.is_empty());
        assert!(first[0] < last[0], "{first:?} {last:?}");
    }

    #[test]
    fn labels_are_short_and_a_lone_epoch_or_nan_does_not_break_the_plot() {
        assert_eq!(label(0.25), "0.25");
        assert_eq!(label(2.0), "2");
        assert_eq!(label(0.00012), "1.2E-4");
        assert_eq!(label(0.0), "0");
        let one = [EpochRow {
            epoch: 1,
            train_loss: f64::NAN,
            validation_loss: 0.3,
            validation_score: -0.02,
        }];
        let (pixels, _, _) = render_curves(&one, "-ABSREL");
        assert!(count(&pixels, VALIDATION) > 0);
        let dir = std::env::temp_dir().join(format!("perception-curves-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_curves(&dir, &rows(), "AP").unwrap();
        let decoder = png::Decoder::new(std::io::BufReader::new(
            std::fs::File::open(dir.join("curves.png")).unwrap(),
        ));
        let info = decoder.read_info().unwrap().info().clone();
        assert_eq!((info.width, info.height), (WIDTH as u32, HEIGHT as u32));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
