//! IDX files of unsigned bytes (the MNIST / Fashion-MNIST format), read into memory.

use std::io::Read;
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum IdxError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an IDX file of unsigned bytes: {message}")]
    Format { path: PathBuf, message: String },
}

/// An IDX array of unsigned bytes (the MNIST / Fashion-MNIST format): dimensions and data.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads an IDX file, gzip-compressed (`.gz`, as Debian ships Fashion-MNIST) or plain.
///
/// Layout (LeCun's MNIST page): two zero bytes, the element type (0x08 = unsigned byte), the
/// number of dimensions, each dimension as a big-endian u32, then the data in row-major order.
pub fn read_idx(path: &Path) -> Result<IdxArray, IdxError> {
    let io = |source| IdxError::Io {
        path: path.to_owned(),
        source,
    };
    let raw = std::fs::read(path).map_err(io)?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(io)?;
        out
    } else {
        raw
    };
    parse_idx(&bytes).map_err(|message| IdxError::Format {
        path: path.to_owned(),
        message,
    })
}

pub fn parse_idx(bytes: &[u8]) -> Result<IdxArray, String> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err("missing the 00 00 magic".into());
    }
    if bytes[2] != 0x08 {
        return Err(format!(
            "element type 0x{:02x}; only 0x08 (unsigned byte) is supported",
            bytes[2]
        ));
    }
    let ndims = bytes[3] as usize;
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(format!("truncated header ({} dimensions)", ndims));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| {
            u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize
        })
        .collect();
    let count: usize = dims.iter().product();
    if bytes.len() - header != count {
        return Err(format!(
            "dimensions {dims:?} need {count} bytes of data, found {}",
            bytes.len() - header
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_tiny_array_and_names_what_is_wrong() {
        let mut bytes = vec![0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3];
        bytes.extend([1, 2, 3, 4, 5, 6]);
        let a = parse_idx(&bytes).unwrap();
        assert_eq!(a.dims, [2, 3]);
        assert_eq!(a.data, [1, 2, 3, 4, 5, 6]);
        assert!(parse_idx(&bytes[..15])
            .unwrap_err()
            .contains("need 6 bytes"));
        let mut float = bytes.clone();
        float[2] = 0x0d;
        assert!(parse_idx(&float).unwrap_err().contains("0x0d"));
    }
}
