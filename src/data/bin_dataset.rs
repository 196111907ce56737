//! The data set folder `perception_train generate` writes (`rgb/`, `mask/`, `depth/`, `labels/`,
//! `dataset.yaml`): its metadata and per-frame file paths, read by training and evaluation.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::scene::labels::FrameLabels;

/// A data set folder written by `perception_train generate` (or made by hand in the same
/// layout): `rgb/NNNNNN.png`, `mask/NNNNNN.png`, ..., and `dataset.yaml`.
#[derive(Clone, Debug)]
pub struct BinDataset {
    pub root: PathBuf,
    pub count: usize,
    pub width: u32,
    pub height: u32,
    pub class_names: Vec<String>,
    pub class_colors: Vec<[u8; 3]>,
}

#[derive(Deserialize)]
struct Info {
    count: usize,
    width: u32,
    height: u32,
    classes: Vec<ClassEntry>,
}

#[derive(Deserialize)]
struct ClassEntry {
    name: String,
    color: [u8; 3],
}

impl BinDataset {
    pub fn open(root: &Path) -> Result<Self, String> {
        let path = root.join("dataset.yaml");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "cannot read {}: {e}; give a folder made by `perception_train generate`",
                path.display()
            )
        })?;
        let info: Info = serde_yaml::from_str(&text)
            .map_err(|e| format!("{} is not valid: {e}", path.display()))?;
        Ok(Self {
            root: root.to_owned(),
            count: info.count,
            width: info.width,
            height: info.height,
            class_names: info.classes.iter().map(|c| c.name.clone()).collect(),
            class_colors: info.classes.iter().map(|c| c.color).collect(),
        })
    }

    pub fn rgb(&self, index: usize) -> Result<Vec<u8>, String> {
        self.read(index, "rgb", png::ColorType::Rgb, png::BitDepth::Eight)
    }

    pub fn mask(&self, index: usize) -> Result<Vec<u8>, String> {
        self.read(
            index,
            "mask",
            png::ColorType::Grayscale,
            png::BitDepth::Eight,
        )
    }

    /// The depth sensor's reading in millimetres, 0 where it has none (16-bit PNG).
    pub fn depth_mm(&self, index: usize) -> Result<Vec<u16>, String> {
        let bytes = self.read(
            index,
            "depth",
            png::ColorType::Grayscale,
            png::BitDepth::Sixteen,
        )?;
        Ok(bytes
            .chunks_exact(2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .collect())
    }

    /// The instance ids (16-bit PNG), 0 where no object is seen.
    pub fn instances(&self, index: usize) -> Result<Vec<u16>, String> {
        let bytes = self.read(
            index,
            "instances",
            png::ColorType::Grayscale,
            png::BitDepth::Sixteen,
        )?;
        Ok(bytes
            .chunks_exact(2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .collect())
    }

    /// The frame's labels: camera pose and intrinsics, objects, grasp candidates.
    pub fn labels(&self, index: usize) -> Result<FrameLabels, String> {
        let path = self.root.join("labels").join(format!("{index:06}.json"));
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{} is not valid: {e}", path.display()))
    }

    fn read(
        &self,
        index: usize,
        folder: &str,
        color: png::ColorType,
        depth: png::BitDepth,
    ) -> Result<Vec<u8>, String> {
        let path = self.root.join(folder).join(format!("{index:06}.png"));
        let fail = |e: &dyn std::fmt::Display| format!("cannot read {}: {e}", path.display());
        let file = std::fs::File::open(&path).map_err(|e| fail(&e))?;
        let mut reader = png::Decoder::new(std::io::BufReader::new(file))
            .read_info()
            .map_err(|e| fail(&e))?;
        let mut buf = vec![
            0;
            reader
                .output_buffer_size()
                .ok_or_else(|| fail(&"too large"))?
        ];
        let info = reader.next_frame(&mut buf).map_err(|e| fail(&e))?;
        if (info.width, info.height) != (self.width, self.height)
            || info.color_type != color
            || info.bit_depth != depth
        {
            return Err(fail(&format!(
                "expected {}x{} {depth:?}-bit {color:?}, found {}x{} {:?} {:?}",
                self.width, self.height, info.width, info.height, info.bit_depth, info.color_type
            )));
        }
        buf.truncate(info.buffer_size());
        Ok(buf)
    }
}
