//! Users' mesh files as generator objects: OBJ, STL (ASCII and binary) and PLY (ASCII and
//! binary) read into [`TriangleMesh`]es in metres, welded, checked, centred at their centre
//! of mass and wound outward.
//!
//! A config names a file or a folder with the units it was modelled in
//! (`- {path: parts/, units: mm}`, a [`MeshSource`]). A file that cannot become an object is
//! refused with an error naming the file and, where one is likely, the fix; nothing here
//! panics on any input, and no count read from a file sizes an allocation unless the file
//! is long enough to hold that many records.

use std::fmt;
use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use nalgebra::Point3;
use ply_rs_bw::parser::Parser;
use ply_rs_bw::ply::{DefaultElement, Property};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::mesh::{MeshProblem, MeshTopology, TriangleMesh};

/// Extensions read, lower case; matched regardless of case.
const MESH_EXTENSIONS: [&str; 3] = ["obj", "stl", "ply"];

/// Vertices closer than this fraction of the bounding-box diagonal are one vertex. STL
/// stores f32 (relative precision 6e-8), so copies of a corner differ by far less; real
/// features of a part are far larger (1e-6 of a 0.1 m part is 0.1 µm).
const WELD_TOLERANCE_FRACTION: f64 = 1e-6;

/// Bin-picking objects are between these sizes (largest extent). Anything outside is far
/// more often a file in other units than a real object.
const MIN_EXTENT_M: f64 = 0.002;
const MAX_EXTENT_M: f64 = 2.0;

/// The size a part is most likely to have, to pick between units that would all give a
/// plausible size (a value read as 85 m is 0.85 m in cm and 85 mm in mm: mm is likelier).
const TYPICAL_EXTENT_M: f64 = 0.1;

/// Binary STL: an 80-byte header, a u32 triangle count, then 50 bytes per triangle.
const STL_HEADER_BYTES: usize = 84;
const STL_TRIANGLE_BYTES: u64 = 50;

/// The length unit a mesh file's coordinates are in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Units {
    M,
    Cm,
    Mm,
}

impl Units {
    const ALL: [Units; 3] = [Units::M, Units::Cm, Units::Mm];

    pub fn metres_per_unit(self) -> f64 {
        match self {
            Units::M => 1.0,
            Units::Cm => 0.01,
            Units::Mm => 0.001,
        }
    }

    /// The value to write in a config (`units: mm`).
    fn config_value(self) -> &'static str {
        match self {
            Units::M => "m",
            Units::Cm => "cm",
            Units::Mm => "mm",
        }
    }

    fn word(self) -> &'static str {
        match self {
            Units::M => "metres",
            Units::Cm => "centimetres",
            Units::Mm => "millimetres",
        }
    }
}

impl fmt::Display for Units {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.config_value())
    }
}

/// One entry of the config's list of mesh objects: a file, or a folder read recursively.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshSource {
    pub path: PathBuf,
    pub units: Units,
}

/// A mesh file ready to be an object.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedMesh {
    /// The file name, without its folder.
    pub name: String,
    /// Metres, welded, centre of mass at the origin, wound outward where closed.
    pub mesh: TriangleMesh,
    pub topology: MeshTopology,
}

/// Why a mesh file or folder could not be used. Every variant names the path.
#[derive(Debug, Error)]
pub enum MeshError {
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: unsupported mesh file type; the readable ones are .obj, .stl and .ply \
         (any letter case)"
    )]
    UnsupportedExtension { path: PathBuf },
    #[error(
        "{path} holds no mesh file: looked (in subfolders too) for .obj, .stl and .ply, \
         any letter case"
    )]
    NoMeshFiles { path: PathBuf },
    #[error("{path} is not a valid {format} file: {message}")]
    Parse {
        path: PathBuf,
        format: &'static str,
        message: String,
    },
    #[error(
        "{path} contains no triangles (empty, or only points or lines): export the object \
         as a surface mesh"
    )]
    Empty { path: PathBuf },
    #[error(
        "{path}: vertex {index} (counting from 0) has a NaN or infinite coordinate; repair or \
         re-export the mesh"
    )]
    NonFiniteVertex { path: PathBuf, index: usize },
    #[error(
        "{path}: triangle {triangle} refers to vertex {vertex} but the file has only \
         {vertex_count} vertices"
    )]
    IndexOutOfRange {
        path: PathBuf,
        triangle: usize,
        vertex: u32,
        vertex_count: usize,
    },
    #[error("{path}: {problem}")]
    Degenerate { path: PathBuf, problem: MeshProblem },
    #[error("{path} is {extent} across in {}: {hint}", .units.word())]
    ImplausibleSize {
        path: PathBuf,
        /// The largest extent, as text with a unit that fits its size.
        extent: String,
        units: Units,
        /// Which units would give a plausible size, or what else to check.
        hint: String,
    },
}

impl MeshError {
    fn from_problem(path: &Path, problem: MeshProblem) -> Self {
        let path = path.to_path_buf();
        match problem {
            MeshProblem::Empty => MeshError::Empty { path },
            MeshProblem::NonFiniteVertex { index, .. } => {
                MeshError::NonFiniteVertex { path, index }
            }
            MeshProblem::IndexOutOfRange {
                triangle,
                vertex,
                vertex_count,
            } => MeshError::IndexOutOfRange {
                path,
                triangle,
                vertex,
                vertex_count,
            },
            problem @ (MeshProblem::ZeroExtent { .. } | MeshProblem::NoArea { .. }) => {
                MeshError::Degenerate { path, problem }
            }
        }
    }

    fn parse(path: &Path, format: &'static str, message: impl fmt::Display) -> Self {
        MeshError::Parse {
            path: path.to_path_buf(),
            format,
            message: message.to_string(),
        }
    }
}

/// The mesh files a source names: the file itself, or every .obj, .stl and .ply below the
/// folder (any letter case, subfolders included, symbolic links to folders not followed),
/// sorted so that object ids do not depend on the file system's listing order.
pub fn mesh_files(source: &MeshSource) -> Result<Vec<PathBuf>, MeshError> {
    let path = &source.path;
    let metadata = fs::metadata(path).map_err(|source| MeshError::Unreadable {
        path: path.clone(),
        source,
    })?;
    if !metadata.is_dir() {
        return if has_mesh_extension(path) {
            Ok(vec![path.clone()])
        } else {
            Err(MeshError::UnsupportedExtension { path: path.clone() })
        };
    }
    let mut files = Vec::new();
    collect_mesh_files(path, &mut files)?;
    if files.is_empty() {
        return Err(MeshError::NoMeshFiles { path: path.clone() });
    }
    files.sort();
    Ok(files)
}

fn collect_mesh_files(folder: &Path, files: &mut Vec<PathBuf>) -> Result<(), MeshError> {
    let unreadable = |source| MeshError::Unreadable {
        path: folder.to_path_buf(),
        source,
    };
    for entry in fs::read_dir(folder).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(|source| MeshError::Unreadable {
            path: path.clone(),
            source,
        })?;
        if file_type.is_dir() {
            collect_mesh_files(&path, files)?;
        } else if has_mesh_extension(&path) && path.is_file() {
            files.push(path);
        }
    }
    Ok(())
}

fn has_mesh_extension(path: &Path) -> bool {
    lower_extension(path).is_some_and(|e| MESH_EXTENSIONS.contains(&e.as_str()))
}

fn lower_extension(path: &Path) -> Option<String> {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
}

/// Reads one mesh file (format by extension) and makes it an object: converted to metres,
/// welded, checked, of a plausible size, wound outward if closed, centred at its centre of
/// mass.
pub fn read_mesh(path: &Path, units: Units) -> Result<LoadedMesh, MeshError> {
    let extension = lower_extension(path).unwrap_or_default();
    if !MESH_EXTENSIONS.contains(&extension.as_str()) {
        return Err(MeshError::UnsupportedExtension {
            path: path.to_path_buf(),
        });
    }
    let bytes = fs::read(path).map_err(|source| MeshError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.is_empty() {
        return Err(MeshError::Empty {
            path: path.to_path_buf(),
        });
    }
    let in_file_units = match extension.as_str() {
        "obj" => parse_obj(path, &bytes)?,
        "stl" => parse_stl(path, bytes)?,
        _ => parse_ply(path, &bytes)?,
    };
    let in_metres = in_file_units.scaled(units.metres_per_unit());
    // Checked before welding so that a bad vertex is named by its index in the file.
    in_metres
        .check()
        .map_err(|problem| MeshError::from_problem(path, problem))?;
    check_size(path, &in_metres, units)?;
    let (min_m, max_m) = in_metres.aabb();
    let welded = in_metres.welded(WELD_TOLERANCE_FRACTION * (max_m - min_m).norm());
    let topology = welded
        .check()
        .map_err(|problem| MeshError::from_problem(path, problem))?;
    let mesh = welded.oriented_outward().recentered();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string_lossy().into_owned());
    Ok(LoadedMesh {
        name,
        mesh,
        topology,
    })
}

/// Refuses an object whose largest extent is outside [`MIN_EXTENT_M`, `MAX_EXTENT_M`],
/// suggesting the units that would make it plausible.
fn check_size(path: &Path, mesh_m: &TriangleMesh, units: Units) -> Result<(), MeshError> {
    let extent_m = mesh_m.max_extent_m();
    if (MIN_EXTENT_M..=MAX_EXTENT_M).contains(&extent_m) {
        return Ok(());
    }
    let extent_in_file_units = extent_m / units.metres_per_unit();
    let likely = Units::ALL
        .into_iter()
        .filter(|&u| u != units)
        .map(|u| (u, extent_in_file_units * u.metres_per_unit()))
        .filter(|(_, e)| (MIN_EXTENT_M..=MAX_EXTENT_M).contains(e))
        .min_by(|(_, a), (_, b)| {
            let off = |e: f64| (e / TYPICAL_EXTENT_M).ln().abs();
            off(*a).total_cmp(&off(*b))
        });
    let hint = match likely {
        Some((u, _)) => format!("is it in {}? set units: {}", u, u.config_value()),
        None => format!(
            "objects must be {} to {} across in any units; check the file's scale",
            length_text(MIN_EXTENT_M),
            length_text(MAX_EXTENT_M)
        ),
    };
    Err(MeshError::ImplausibleSize {
        path: path.to_path_buf(),
        extent: length_text(extent_m),
        units,
        hint,
    })
}

/// A length in m from 1 m up, else in mm, with three significant digits at most.
fn length_text(length_m: f64) -> String {
    let (value, unit) = if length_m >= 1.0 {
        (length_m, "m")
    } else {
        (length_m * 1000.0, "mm")
    };
    let decimals = if value >= 100.0 || value == 0.0 {
        0
    } else {
        (2.0 - value.log10().floor()).clamp(0.0, 12.0) as usize
    };
    format!("{value:.decimals$} {unit}")
}

/// OBJ: faces triangulated by tobj (quads and n-gons as fans), points and lines ignored,
/// every model in the file merged into one mesh. Materials are not read.
fn parse_obj(path: &Path, bytes: &[u8]) -> Result<TriangleMesh, MeshError> {
    // tobj's optional `merging` and `reordering` features add fields; the update keeps this
    // compiling should another crate in the build turn them on.
    #[allow(clippy::needless_update)]
    let options = tobj::LoadOptions {
        triangulate: true,
        single_index: false,
        ignore_points: true,
        ignore_lines: true,
        ..Default::default()
    };
    let (models, _materials) = tobj::load_obj_buf(&mut Cursor::new(bytes), &options, |_| {
        Err(tobj::LoadError::OpenFileFailed)
    })
    .map_err(|e| MeshError::parse(path, "OBJ", e))?;

    let mut mesh = TriangleMesh {
        vertices_m: Vec::new(),
        triangles: Vec::new(),
    };
    for model in &models {
        let offset = u32::try_from(mesh.vertices_m.len())
            .map_err(|_| MeshError::parse(path, "OBJ", "more than 2^32 vertices"))?;
        mesh.vertices_m.extend(
            model
                .mesh
                .positions
                .chunks_exact(3)
                .map(|p| Point3::new(f64::from(p[0]), f64::from(p[1]), f64::from(p[2]))),
        );
        for t in model.mesh.indices.chunks_exact(3) {
            let shifted = [t[0], t[1], t[2]].map(|i| i.checked_add(offset));
            let [Some(a), Some(b), Some(c)] = shifted else {
                return Err(MeshError::parse(path, "OBJ", "more than 2^32 vertices"));
            };
            mesh.triangles.push([a, b, c]);
        }
    }
    // tobj numbers vertices in order of first use; name a bad one by its `v` line instead.
    let non_finite = |p: &Point3<f64>| !p.coords.iter().all(|c| c.is_finite());
    if let Some(used_index) = mesh.vertices_m.iter().position(non_finite) {
        return Err(MeshError::NonFiniteVertex {
            path: path.to_path_buf(),
            index: first_non_finite_obj_vertex(bytes).unwrap_or(used_index),
        });
    }
    Ok(mesh)
}

/// Index (from 0) of the first `v` line with a NaN or infinite coordinate. A value beyond
/// f32's range counts, since tobj may store f32.
fn first_non_finite_obj_vertex(bytes: &[u8]) -> Option<usize> {
    let non_finite = |token: &str| {
        token.parse::<f64>().is_ok_and(|v| !v.is_finite())
            || token.parse::<f32>().is_ok_and(|v| !v.is_finite())
    };
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|line| std::str::from_utf8(line).ok())
        .filter_map(|line| line.trim_start().strip_prefix('v'))
        .filter(|rest| rest.starts_with([' ', '\t']))
        .position(|rest| rest.split_whitespace().take(3).any(non_finite))
}

/// STL, ASCII or binary. stl_io takes a file starting with "solid " for ASCII, but many
/// exporters write binary files whose free-form header starts with "solid"; a file whose
/// length is exactly that of a binary STL with the triangle count in its header is binary.
fn parse_stl(path: &Path, mut bytes: Vec<u8>) -> Result<TriangleMesh, MeshError> {
    let binary_length = |bytes: &[u8]| -> Option<u64> {
        let count = u32::from_le_bytes(bytes.get(80..84)?.try_into().ok()?);
        Some(STL_HEADER_BYTES as u64 + STL_TRIANGLE_BYTES * u64::from(count))
    };
    let file_bytes = bytes.len() as u64;
    let starts_solid = bytes.starts_with(b"solid");
    let is_binary = binary_length(&bytes) == Some(file_bytes) || !starts_solid;
    if is_binary {
        let Some(needed_bytes) = binary_length(&bytes) else {
            return Err(MeshError::parse(
                path,
                "STL",
                format!(
                    "{file_bytes} bytes is shorter than a binary STL header (84 bytes), and \
                     an ASCII STL starts with \"solid\""
                ),
            ));
        };
        if needed_bytes > file_bytes {
            return Err(MeshError::parse(
                path,
                "STL",
                format!(
                    "truncated binary STL: its header announces {} triangles ({needed_bytes} \
                     bytes) but the file has {file_bytes} bytes",
                    (needed_bytes - STL_HEADER_BYTES as u64) / STL_TRIANGLE_BYTES
                ),
            ));
        }
        // The header is free text that binary readers skip; changing its first byte keeps
        // stl_io's "solid " test from taking the file for ASCII.
        if starts_solid {
            bytes[0] = b'S';
        }
    } else if bytes.get(5) != Some(&b' ') {
        // stl_io wants "solid " with a space; "solid\n" (a solid without a name) is valid too.
        bytes.insert(5, b' ');
    }

    let mut cursor = Cursor::new(bytes);
    let reader =
        stl_io::create_stl_reader(&mut cursor).map_err(|e| MeshError::parse(path, "STL", e))?;
    let mut mesh = TriangleMesh {
        vertices_m: Vec::new(),
        triangles: Vec::new(),
    };
    for triangle in reader {
        let triangle = triangle.map_err(|e| MeshError::parse(path, "STL", e))?;
        let first = u32::try_from(mesh.vertices_m.len())
            .ok()
            .filter(|first| first.checked_add(2).is_some())
            .ok_or_else(|| MeshError::parse(path, "STL", "more than 2^32 vertices"))?;
        for vertex in triangle.vertices {
            let [x, y, z] = vertex.0.map(f64::from);
            mesh.vertices_m.push(Point3::new(x, y, z));
        }
        mesh.triangles.push([first, first + 1, first + 2]);
    }
    Ok(mesh)
}

/// PLY, ASCII or binary of either endianness: `vertex` elements with scalar `x`, `y`, `z`,
/// `face` elements with a `vertex_indices` (or `vertex_index`) list of any length, split
/// into a fan of triangles. A file without faces (a point cloud) reads as empty.
fn parse_ply(path: &Path, bytes: &[u8]) -> Result<TriangleMesh, MeshError> {
    let ply = Parser::<DefaultElement>::new()
        .read_ply(&mut Cursor::new(bytes))
        .map_err(|e| MeshError::parse(path, "PLY", e))?;

    let mut mesh = TriangleMesh {
        vertices_m: Vec::new(),
        triangles: Vec::new(),
    };
    for (index, vertex) in ply.payload.get("vertex").into_iter().flatten().enumerate() {
        let coordinate = |name: &str| {
            vertex.get(name).and_then(scalar_as_f64).ok_or_else(|| {
                MeshError::parse(
                    path,
                    "PLY",
                    format!("vertex {index} has no numeric property {name}"),
                )
            })
        };
        mesh.vertices_m.push(Point3::new(
            coordinate("x")?,
            coordinate("y")?,
            coordinate("z")?,
        ));
    }
    for (index, face) in ply.payload.get("face").into_iter().flatten().enumerate() {
        let corners = face
            .get("vertex_indices")
            .or_else(|| face.get("vertex_index"))
            .ok_or_else(|| {
                MeshError::parse(
                    path,
                    "PLY",
                    format!("face {index} has no vertex_indices (or vertex_index) list"),
                )
            })?
            .to_u32_list()
            .ok_or_else(|| {
                MeshError::parse(
                    path,
                    "PLY",
                    format!("face {index}: vertex indices must be a list of non-negative integers"),
                )
            })?;
        // A face with fewer than three corners has no area; it is dropped like a line in OBJ.
        if let Some((&first, rest)) = corners.split_first() {
            for pair in rest.windows(2) {
                mesh.triangles.push([first, pair[0], pair[1]]);
            }
        }
    }
    Ok(mesh)
}

fn scalar_as_f64(property: &Property) -> Option<f64> {
    match *property {
        Property::Float(v) => Some(f64::from(v)),
        Property::Double(v) => Some(v),
        Property::Char(v) => Some(f64::from(v)),
        Property::UChar(v) => Some(f64::from(v)),
        Property::Short(v) => Some(f64::from(v)),
        Property::UShort(v) => Some(f64::from(v)),
        Property::Int(v) => Some(f64::from(v)),
        Property::UInt(v) => Some(f64::from(v)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh folder under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(test: &str) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "perception_mesh_io_{}_{}_{}",
                std::process::id(),
                test,
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let path = self.0.join(name);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).unwrap();
            }
            fs::write(&path, bytes).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Corners of an axis-aligned cube from the origin to `side` (file units).
    fn cube_corners(side: f64) -> Vec<[f64; 3]> {
        (0..8u32)
            .map(|i| {
                [
                    side * f64::from(i & 1),
                    side * f64::from((i >> 1) & 1),
                    side * f64::from((i >> 2) & 1),
                ]
            })
            .collect()
    }

    /// The cube's faces as outward-wound quads over `cube_corners`.
    const CUBE_QUADS: [[u32; 4]; 6] = [
        [0, 2, 3, 1],
        [4, 5, 7, 6],
        [0, 1, 5, 4],
        [2, 6, 7, 3],
        [0, 4, 6, 2],
        [1, 3, 7, 5],
    ];

    fn cube_triangles() -> Vec<[u32; 3]> {
        CUBE_QUADS
            .iter()
            .flat_map(|q| [[q[0], q[1], q[2]], [q[0], q[2], q[3]]])
            .collect()
    }

    fn ascii_stl_cube(side: f64) -> String {
        let corners = cube_corners(side);
        let mut text = String::from("solid cube\n");
        for t in cube_triangles() {
            text.push_str("  facet normal 0 0 0\n    outer loop\n");
            for i in t {
                let [x, y, z] = corners[i as usize];
                text.push_str(&format!("      vertex {x} {y} {z}\n"));
            }
            text.push_str("    endloop\n  endfacet\n");
        }
        text.push_str("endsolid cube\n");
        text
    }

    fn binary_stl_cube(side: f64, header: &[u8]) -> Vec<u8> {
        let corners = cube_corners(side);
        let mut bytes = vec![b' '; 80];
        bytes[..header.len()].copy_from_slice(header);
        bytes.extend(12u32.to_le_bytes());
        for t in cube_triangles() {
            bytes.extend([0f32; 3].iter().flat_map(|v| v.to_le_bytes()));
            for i in t {
                for c in corners[i as usize] {
                    bytes.extend((c as f32).to_le_bytes());
                }
            }
            bytes.extend([0u8; 2]);
        }
        bytes
    }

    fn obj_cube(side: f64, skip_top: bool) -> String {
        let mut text = String::new();
        for [x, y, z] in cube_corners(side) {
            text.push_str(&format!("v {x} {y} {z}\n"));
        }
        for (face, q) in CUBE_QUADS.iter().enumerate() {
            if skip_top && face == 1 {
                continue;
            }
            text.push_str(&format!(
                "f {} {} {} {}\n",
                q[0] + 1,
                q[1] + 1,
                q[2] + 1,
                q[3] + 1
            ));
        }
        text
    }

    /// A 50 mm cube read in mm: 0.05 m across, eight welded corners, closed, centred.
    fn assert_50_mm_cube(loaded: &LoadedMesh) {
        let mesh = &loaded.mesh;
        assert!(
            (mesh.max_extent_m() - 0.05).abs() < 1e-7,
            "{}",
            mesh.max_extent_m()
        );
        assert_eq!(mesh.vertices_m.len(), 8);
        assert_eq!(mesh.triangles.len(), 12);
        assert!(loaded.topology.closed && loaded.topology.manifold);
        assert!((mesh.volume_m3().unwrap() - 1.25e-4).abs() < 1e-10);
        assert!(mesh.center_of_mass().coords.norm() < 1e-9);
        let (min_m, max_m) = mesh.aabb();
        assert!((min_m.coords + max_m.coords).norm() < 1e-9);
    }

    #[test]
    fn units_and_source_read_from_config() {
        let source: MeshSource = serde_yaml::from_str("{path: parts/, units: mm}").unwrap();
        assert_eq!(
            source,
            MeshSource {
                path: PathBuf::from("parts/"),
                units: Units::Mm
            }
        );
        assert!(serde_yaml::from_str::<MeshSource>("{path: a.stl, units: mm, scale: 2}").is_err());
        assert!(serde_yaml::from_str::<MeshSource>("{path: a.stl, units: inch}").is_err());
        assert_eq!(Units::Cm.metres_per_unit(), 0.01);
    }

    #[test]
    fn obj_with_quads_and_a_pentagon_in_two_objects() {
        // A pentagonal prism 40 mm tall: two pentagons and five quads, split over two `o`
        // objects that share vertices by their global OBJ indices.
        let radius_mm = 30.0;
        let height_mm = 40.0;
        let mut text = String::from("# prism\nmtllib missing.mtl\no caps\n");
        for z in [0.0, height_mm] {
            for k in 0..5 {
                let angle = 2.0 * std::f64::consts::PI * f64::from(k) / 5.0;
                text.push_str(&format!(
                    "v {} {} {z}\n",
                    radius_mm * angle.cos(),
                    radius_mm * angle.sin()
                ));
            }
        }
        text.push_str("f 5 4 3 2 1\nf 6 7 8 9 10\no sides\n");
        for k in 0..5 {
            let next = (k + 1) % 5;
            text.push_str(&format!(
                "f {} {} {} {}\n",
                k + 1,
                next + 1,
                next + 6,
                k + 6
            ));
        }
        text.push_str("l 1 2\n");
        let dir = TempDir::new("obj");
        let path = dir.write("prism.OBJ", text.as_bytes());
        let loaded = read_mesh(&path, Units::Mm).unwrap();
        assert_eq!(loaded.name, "prism.OBJ");
        assert_eq!(loaded.mesh.vertices_m.len(), 10);
        assert_eq!(loaded.mesh.triangles.len(), 2 * 3 + 5 * 2);
        assert!(loaded.topology.closed && loaded.topology.manifold);
        let pentagon_area_m2 = 2.5 * 0.03f64.powi(2) * (2.0 * std::f64::consts::PI / 5.0).sin();
        let volume_m3 = loaded.mesh.volume_m3().unwrap();
        // tobj may store f32: compare to its precision.
        let expected_m3 = pentagon_area_m2 * 0.04;
        assert!((volume_m3 / expected_m3 - 1.0).abs() < 1e-6, "{volume_m3}");
        assert!(loaded.mesh.center_of_mass().coords.norm() < 1e-9);
    }

    #[test]
    fn ascii_stl_cube_in_mm() {
        let dir = TempDir::new("ascii_stl");
        let path = dir.write("cube.stl", ascii_stl_cube(50.0).as_bytes());
        assert_50_mm_cube(&read_mesh(&path, Units::Mm).unwrap());
        // A solid without a name is still ASCII.
        let unnamed = ascii_stl_cube(50.0).replacen("solid cube\n", "solid\n", 1);
        let path = dir.write("unnamed.stl", unnamed.as_bytes());
        assert_50_mm_cube(&read_mesh(&path, Units::Mm).unwrap());
    }

    #[test]
    fn binary_stl_cube_even_with_a_solid_header() {
        let dir = TempDir::new("binary_stl");
        let plain = dir.write(
            "plain.stl",
            &binary_stl_cube(50.0, b"exported by a CAD tool"),
        );
        assert_50_mm_cube(&read_mesh(&plain, Units::Mm).unwrap());
        let solid = dir.write(
            "solid.STL",
            &binary_stl_cube(5.0, b"solid part exported as binary"),
        );
        assert_50_mm_cube(&read_mesh(&solid, Units::Cm).unwrap());
    }

    #[test]
    fn truncated_binary_stl_is_refused_without_allocating_its_count() {
        let dir = TempDir::new("truncated_stl");
        let mut bytes = binary_stl_cube(50.0, b"");
        bytes[80..84].copy_from_slice(&u32::MAX.to_le_bytes());
        let path = dir.write("huge.stl", &bytes);
        let error = read_mesh(&path, Units::Mm).unwrap_err();
        assert!(matches!(error, MeshError::Parse { .. }), "{error}");
        assert!(error.to_string().contains("truncated"), "{error}");
    }

    #[test]
    fn ply_ascii_with_quads() {
        let mut text = String::from(
            "ply\nformat ascii 1.0\ncomment a 50 mm cube\nelement vertex 8\n\
             property float x\nproperty float y\nproperty float z\n\
             element face 6\nproperty list uchar int vertex_indices\nend_header\n",
        );
        for [x, y, z] in cube_corners(50.0) {
            text.push_str(&format!("{x} {y} {z}\n"));
        }
        for q in CUBE_QUADS {
            text.push_str(&format!("4 {} {} {} {}\n", q[0], q[1], q[2], q[3]));
        }
        let dir = TempDir::new("ply_ascii");
        let path = dir.write("cube.ply", text.as_bytes());
        assert_50_mm_cube(&read_mesh(&path, Units::Mm).unwrap());
    }

    /// A binary PLY cube: double coordinates, `vertex_index` lists of u8 count and u32
    /// indices, with `to_bytes` choosing the endianness.
    fn binary_ply_cube(
        format: &str,
        corners: &[[f64; 3]],
        f64_bytes: fn(f64) -> [u8; 8],
        u32_bytes: fn(u32) -> [u8; 4],
    ) -> Vec<u8> {
        let mut bytes = format!(
            "ply\nformat {format} 1.0\nelement vertex {}\nproperty double x\n\
             property double y\nproperty double z\nelement face 6\n\
             property list uchar uint vertex_index\nend_header\n",
            corners.len()
        )
        .into_bytes();
        for corner in corners {
            for c in corner {
                bytes.extend(f64_bytes(*c));
            }
        }
        for q in CUBE_QUADS {
            bytes.push(4);
            for i in q {
                bytes.extend(u32_bytes(i));
            }
        }
        bytes
    }

    #[test]
    fn ply_binary_little_and_big_endian() {
        let dir = TempDir::new("ply_binary");
        let corners = cube_corners(0.05);
        let little = binary_ply_cube(
            "binary_little_endian",
            &corners,
            f64::to_le_bytes,
            u32::to_le_bytes,
        );
        let path = dir.write("little.ply", &little);
        assert_50_mm_cube(&read_mesh(&path, Units::M).unwrap());
        let big = binary_ply_cube(
            "binary_big_endian",
            &corners,
            f64::to_be_bytes,
            u32::to_be_bytes,
        );
        let path = dir.write("big.ply", &big);
        assert_50_mm_cube(&read_mesh(&path, Units::M).unwrap());
    }

    #[test]
    fn nan_vertex_is_refused_by_its_index() {
        let dir = TempDir::new("nan");
        let mut corners = cube_corners(0.05);
        corners[5][1] = f64::NAN;
        let bytes = binary_ply_cube(
            "binary_little_endian",
            &corners,
            f64::to_le_bytes,
            u32::to_le_bytes,
        );
        let path = dir.write("nan.ply", &bytes);
        let error = read_mesh(&path, Units::M).unwrap_err();
        assert!(
            matches!(error, MeshError::NonFiniteVertex { index: 5, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("nan.ply"), "{error}");
    }

    #[test]
    fn nan_obj_vertex_is_named_by_its_line_not_tobj_order() {
        let dir = TempDir::new("nan_obj");
        // The first face uses file vertex 3 first, which tobj would number 0.
        let text = "v 0 0 0\nv 10 0 0\nv 0 10 0\nv 0 nan 10\nvn 0 0 1\nf 4 1 2\nf 1 3 2\n";
        let path = dir.write("nan.obj", text.as_bytes());
        let error = read_mesh(&path, Units::Mm).unwrap_err();
        assert!(
            matches!(error, MeshError::NonFiniteVertex { index: 3, .. }),
            "{error}"
        );
    }

    #[test]
    fn out_of_range_ply_index_is_refused() {
        let dir = TempDir::new("ply_range");
        let text = "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\n\
                    property float y\nproperty float z\nelement face 1\n\
                    property list uchar int vertex_indices\nend_header\n\
                    0 0 0\n10 0 0\n0 10 0\n3 0 1 7\n";
        let path = dir.write("range.ply", text.as_bytes());
        let error = read_mesh(&path, Units::Mm).unwrap_err();
        assert!(
            matches!(
                error,
                MeshError::IndexOutOfRange {
                    vertex: 7,
                    vertex_count: 3,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn wrong_units_are_refused_with_the_likely_ones() {
        let dir = TempDir::new("units");
        let path = dir.write("cube.stl", ascii_stl_cube(85.0).as_bytes());
        let error = read_mesh(&path, Units::M).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, MeshError::ImplausibleSize { .. }),
            "{message}"
        );
        assert!(message.contains("85.0 m across in metres"), "{message}");
        assert!(message.contains("is it in mm? set units: mm"), "{message}");

        let path = dir.write("metres.stl", ascii_stl_cube(0.05).as_bytes());
        let message = read_mesh(&path, Units::Mm).unwrap_err().to_string();
        assert!(message.ends_with("is it in m? set units: m"), "{message}");

        let path = dir.write("planet.stl", ascii_stl_cube(1e7).as_bytes());
        let message = read_mesh(&path, Units::Mm).unwrap_err().to_string();
        assert!(message.contains("check the file's scale"), "{message}");
    }

    #[test]
    fn empty_and_degenerate_files_are_refused() {
        let dir = TempDir::new("empty");
        for name in ["empty.stl", "empty.obj", "empty.ply"] {
            let path = dir.write(name, b"");
            let error = read_mesh(&path, Units::Mm).unwrap_err();
            assert!(matches!(error, MeshError::Empty { .. }), "{error}");
            assert!(error.to_string().contains(name), "{error}");
        }
        let points_only = dir.write("points.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\n");
        assert!(matches!(
            read_mesh(&points_only, Units::Mm),
            Err(MeshError::Empty { .. })
        ));
        let collinear = dir.write("line.obj", b"v 0 0 0\nv 10 0 0\nv 20 0 0\nf 1 2 3\n");
        let error = read_mesh(&collinear, Units::Mm).unwrap_err();
        assert!(matches!(error, MeshError::Degenerate { .. }), "{error}");
    }

    #[test]
    fn open_mesh_is_accepted_as_open() {
        let dir = TempDir::new("open");
        let path = dir.write("box.obj", obj_cube(50.0, true).as_bytes());
        let loaded = read_mesh(&path, Units::Mm).unwrap();
        assert!(!loaded.topology.closed);
        assert!(loaded.topology.manifold);
        assert_eq!(loaded.mesh.triangles.len(), 10);
        assert_eq!(loaded.mesh.volume_m3(), None);
    }

    #[test]
    fn inside_out_file_is_turned_outward() {
        let dir = TempDir::new("inside_out");
        let flipped: String = obj_cube(50.0, false)
            .lines()
            .map(|line| match line.strip_prefix("f ") {
                Some(rest) => {
                    let reversed: Vec<&str> = rest.split_whitespace().rev().collect();
                    format!("f {}\n", reversed.join(" "))
                }
                None => format!("{line}\n"),
            })
            .collect();
        let path = dir.write("inside_out.obj", flipped.as_bytes());
        let loaded = read_mesh(&path, Units::Mm).unwrap();
        // Outward: a vertex normal points away from the centre.
        let normals = loaded.mesh.vertex_normals();
        assert!(normals[0].dot(&loaded.mesh.vertices_m[0].coords) > 0.0);
    }

    #[test]
    fn folder_listing_is_recursive_sorted_and_filtered() {
        let dir = TempDir::new("folder");
        dir.write("b.STL", b"");
        dir.write("a.obj", b"");
        dir.write("sub/c.ply", b"");
        dir.write("sub/deeper/A.Ply", b"");
        dir.write("notes.txt", b"");
        dir.write("sub/readme", b"");
        let files = mesh_files(&MeshSource {
            path: dir.0.clone(),
            units: Units::Mm,
        })
        .unwrap();
        let relative: Vec<PathBuf> = files
            .iter()
            .map(|f| f.strip_prefix(&dir.0).unwrap().to_path_buf())
            .collect();
        let expected: Vec<PathBuf> = ["a.obj", "b.STL", "sub/c.ply", "sub/deeper/A.Ply"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(relative, expected);

        let single = mesh_files(&MeshSource {
            path: dir.0.join("a.obj"),
            units: Units::Mm,
        })
        .unwrap();
        assert_eq!(single, vec![dir.0.join("a.obj")]);

        let text = MeshSource {
            path: dir.0.join("notes.txt"),
            units: Units::Mm,
        };
        assert!(matches!(
            mesh_files(&text),
            Err(MeshError::UnsupportedExtension { .. })
        ));
        assert!(matches!(
            read_mesh(&dir.0.join("notes.txt"), Units::Mm),
            Err(MeshError::UnsupportedExtension { .. })
        ));
        let missing = MeshSource {
            path: dir.0.join("missing"),
            units: Units::Mm,
        };
        assert!(matches!(
            mesh_files(&missing),
            Err(MeshError::Unreadable { .. })
        ));
    }

    #[test]
    fn folder_without_meshes_says_what_is_read() {
        let dir = TempDir::new("no_meshes");
        dir.write("notes.txt", b"");
        let error = mesh_files(&MeshSource {
            path: dir.0.clone(),
            units: Units::Mm,
        })
        .unwrap_err();
        assert!(matches!(error, MeshError::NoMeshFiles { .. }));
        assert!(error.to_string().contains(".obj, .stl and .ply"), "{error}");
    }

    #[test]
    fn loaded_mesh_casts_rays_through_parry() {
        use parry3d_f64::query::{Ray, RayCast};
        let dir = TempDir::new("parry");
        let path = dir.write("cube.stl", &binary_stl_cube(50.0, b""));
        let trimesh = read_mesh(&path, Units::Mm)
            .unwrap()
            .mesh
            .to_parry()
            .unwrap();
        let ray = Ray::new(
            Point3::new(0.01, -0.01, 0.5),
            nalgebra::Vector3::new(0.0, 0.0, -1.0),
        );
        let distance_m = trimesh.cast_local_ray(&ray, 1.0, true).unwrap();
        assert!((distance_m - 0.475).abs() < 1e-7, "{distance_m}");
    }

    #[test]
    fn garbage_never_panics() {
        let dir = TempDir::new("garbage");
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let prefixes: [&[u8]; 6] = [
            b"",
            b"solid x\n",
            b"ply\nformat binary_little_endian 1.0\nelement vertex 4294967295\n\
              property float x\nend_header\n",
            b"ply\nformat ascii 1.0\nelement face 2\n\
              property list uint int vertex_indices\nend_header\n",
            b"v 1 2 3\nf 1 2 -9\n",
            b"v 1 2 3\nv 4 5 6\nf 1 2 99999999999\n",
        ];
        for round in 0..60 {
            let mut bytes = prefixes[round % prefixes.len()].to_vec();
            let length = rng.gen_range(0..400);
            bytes.extend((0..length).map(|_| rng.gen::<u8>()));
            for extension in MESH_EXTENSIONS {
                let path = dir.write(&format!("g{round}.{extension}"), &bytes);
                let _ = read_mesh(&path, Units::Mm);
            }
        }
    }

    #[test]
    fn length_text_keeps_three_digits() {
        assert_eq!(length_text(85.0), "85.0 m");
        assert_eq!(length_text(0.05), "50.0 mm");
        assert_eq!(length_text(0.00005), "0.0500 mm");
        assert_eq!(length_text(2.0), "2.00 m");
        assert_eq!(length_text(1234.0), "1234 m");
    }
}
