//! The labels written beside every generated frame (`labels/NNNNNN.json`).

use nalgebra::Isometry3;
use serde::{Deserialize, Serialize};

use super::camera::PinholeCamera;
use super::geometry::{Shape, Solid};
use super::grasps::GraspLabel;
use super::render::RenderedFrame;
use super::world::Scene;

/// A rigid transform as written in the labels: translation (metres) and unit quaternion.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoseLabel {
    pub translation_m: [f64; 3],
    pub rotation_xyzw: [f64; 4],
}

impl From<&Isometry3<f64>> for PoseLabel {
    fn from(iso: &Isometry3<f64>) -> Self {
        let t = iso.translation.vector;
        let q = iso.rotation;
        Self {
            translation_m: [t.x, t.y, t.z],
            rotation_xyzw: [q.i, q.j, q.k, q.w],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Intrinsics {
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectLabel {
    pub instance_id: u16,
    pub class_id: u8,
    pub class_name: String,
    /// The shape family (`mesh` for objects read from files).
    #[serde(default = "unknown_family")]
    pub family: String,
    /// The mesh file of a `mesh` object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Meshes: whether every edge is shared by exactly two triangles. Open or non-manifold
    /// mesh files are rendered and flagged here with `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_closed: Option<bool>,
    /// The analytic shape (box, cylinder, prism); absent for meshes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<Shape>,
    pub cell_from_object: PoseLabel,
    pub camera_from_object: PoseLabel,
    pub center_of_mass_cell_m: [f64; 3],
    /// Visible pixels in the instance mask.
    pub visible_pixels: usize,
    /// Bounding box of the visible pixels, [x_min, y_min, x_max, y_max] inclusive; absent
    /// when the object is hidden.
    pub box_px: Option<[u32; 4]>,
}

/// The labels of one frame (`labels/NNNNNN.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameLabels {
    pub index: usize,
    /// Seed of this frame's generator (derived from the data set seed and the index).
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    pub intrinsics: Intrinsics,
    /// Pose of the camera optical frame (REP 103) in the work-cell frame (z up).
    pub cell_from_camera: PoseLabel,
    pub objects: Vec<ObjectLabel>,
    pub grasps: Vec<GraspLabel>,
}

impl FrameLabels {
    pub fn new(
        index: usize,
        seed: u64,
        scene: &Scene,
        camera: &PinholeCamera,
        frame: &RenderedFrame,
        grasps: Vec<GraspLabel>,
    ) -> Self {
        let camera_from_cell = camera.camera_from_cell();
        let objects = scene
            .objects
            .iter()
            .map(|o| {
                let (visible_pixels, box_px) = instance_box(frame, o.instance_id);
                let com = o.center_of_mass();
                ObjectLabel {
                    instance_id: o.instance_id,
                    class_id: o.class_id,
                    class_name: scene.classes.names[o.class_id as usize].clone(),
                    family: o.family.name().to_string(),
                    source: o.source().map(str::to_string),
                    mesh_closed: match &o.placed.solid {
                        Solid::Mesh(mesh) => Some(mesh.closed),
                        Solid::Analytic(_) => None,
                    },
                    shape: o.placed.solid.analytic(),
                    cell_from_object: PoseLabel::from(&o.placed.world_from_local),
                    camera_from_object: PoseLabel::from(
                        &(camera_from_cell * o.placed.world_from_local),
                    ),
                    center_of_mass_cell_m: [com.x, com.y, com.z],
                    visible_pixels,
                    box_px,
                }
            })
            .collect();
        Self {
            index,
            seed,
            width: camera.width,
            height: camera.height,
            intrinsics: Intrinsics {
                fx: camera.fx,
                fy: camera.fy,
                cx: camera.cx,
                cy: camera.cy,
            },
            cell_from_camera: PoseLabel::from(&camera.cell_from_camera),
            objects,
            grasps,
        }
    }
}

/// Labels written before families existed held only the three analytic shapes.
fn unknown_family() -> String {
    "unknown".to_string()
}

fn instance_box(frame: &RenderedFrame, id: u16) -> (usize, Option<[u32; 4]>) {
    let w = frame.width as usize;
    let mut count = 0;
    let mut b = [u32::MAX, u32::MAX, 0, 0];
    for (i, _) in frame
        .instance_mask
        .iter()
        .enumerate()
        .filter(|(_, v)| **v == id)
    {
        let (x, y) = ((i % w) as u32, (i / w) as u32);
        count += 1;
        b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
    }
    (count, (count > 0).then_some(b))
}
