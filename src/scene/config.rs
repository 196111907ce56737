use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything the generator samples from, with the defaults of a bin-picking cell seen by a
/// RealSense-class RGB-D camera. Read from YAML (`--config FILE`); omitted keys keep their
/// defaults, unknown keys are an error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SceneConfig {
    pub bin: BinConfig,
    pub objects: ObjectsConfig,
    pub camera: CameraConfig,
    pub lighting: LightingConfig,
    pub sensor: SensorConfig,
    pub gripper: GripperConfig,
    pub suction: SuctionConfig,
    /// Printed boards or posters placed in the cell.
    pub targets: Vec<TargetConfig>,
    /// Width of the boundary class where two objects touch or overlap, pixels.
    pub boundary_px: u32,
    /// Also write surface normals as PNG (x, y, z mapped from [-1, 1] to [0, 255]).
    pub write_normals: bool,
    /// One fixed cell seen from many cameras (PoseNet's setting: relocalise in a known
    /// place): when set, the bin, objects, targets and lights of every frame come from this
    /// seed and only the camera and the sensor noise change from frame to frame.
    pub fixed_scene_seed: Option<u64>,
}

impl Default for SceneConfig {
    fn default() -> Self {
        Self {
            bin: BinConfig::default(),
            objects: ObjectsConfig::default(),
            camera: CameraConfig::default(),
            lighting: LightingConfig::default(),
            sensor: SensorConfig::default(),
            gripper: GripperConfig::default(),
            suction: SuctionConfig::default(),
            targets: Vec::new(),
            boundary_px: 2,
            write_normals: false,
            fixed_scene_seed: None,
        }
    }
}

/// An open box resting on the cell floor, centred on the cell origin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BinConfig {
    /// Inner length (x) and width (y), metres.
    pub inner_size_m: [f64; 2],
    pub wall_height_m: f64,
    pub wall_thickness_m: f64,
    pub floor_thickness_m: f64,
    pub color: [u8; 3],
}

impl Default for BinConfig {
    fn default() -> Self {
        Self {
            inner_size_m: [0.56, 0.38],
            wall_height_m: 0.16,
            wall_thickness_m: 0.012,
            floor_thickness_m: 0.012,
            color: [60, 90, 140],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShapeKind {
    Box,
    Cylinder,
    Prism,
}

/// How object pixels are labelled in the semantic mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectClasses {
    /// One class per shape kind: box, cylinder, prism.
    ByShape,
    /// A single `object` class.
    Single,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectsConfig {
    /// Inclusive range of objects per scene.
    pub count: [usize; 2],
    pub kinds: Vec<ShapeKind>,
    /// Range of each dimension (box sides, cylinder diameter and height, prism base, height
    /// and length), metres.
    pub size_m: [f64; 2],
    pub classes: ObjectClasses,
    /// Placement attempts per object before it is left out.
    pub placement_attempts: usize,
}

impl Default for ObjectsConfig {
    fn default() -> Self {
        Self {
            count: [4, 10],
            kinds: vec![ShapeKind::Box, ShapeKind::Cylinder, ShapeKind::Prism],
            size_m: [0.035, 0.12],
            classes: ObjectClasses::ByShape,
            placement_attempts: 40,
        }
    }
}

/// Where the camera is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Viewpoint {
    /// Fixed above the bin looking down, with small jitter: bin picking.
    Overhead,
    /// Anywhere on a hemisphere around the cell looking at the bin: pose regression.
    Hemisphere,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CameraConfig {
    pub viewpoint: Viewpoint,
    /// Horizontal field of view; fx = fy = width / (2 tan(fov / 2)), principal point at the
    /// image centre.
    pub horizontal_fov_deg: f64,
    /// Overhead: camera height above the cell floor, range in metres.
    pub overhead_height_m: [f64; 2],
    /// Overhead: horizontal position jitter (each axis, +-), metres.
    pub overhead_jitter_m: f64,
    /// Overhead: tilt of the optical axis from vertical, up to, degrees.
    pub overhead_tilt_deg: f64,
    /// Hemisphere: distance to the look-at point, range in metres.
    pub hemisphere_radius_m: [f64; 2],
    /// Hemisphere: elevation above the floor plane, range in degrees.
    pub hemisphere_elevation_deg: [f64; 2],
    /// Hemisphere: jitter of the look-at point (each axis, +-), metres.
    pub look_at_jitter_m: f64,
    /// Roll about the optical axis, up to, degrees.
    pub roll_jitter_deg: f64,
}

impl Default for CameraConfig {
    fn default() -> Self {
        Self {
            viewpoint: Viewpoint::Overhead,
            horizontal_fov_deg: 69.0,
            overhead_height_m: [0.75, 0.85],
            overhead_jitter_m: 0.02,
            overhead_tilt_deg: 3.0,
            hemisphere_radius_m: [0.9, 1.5],
            hemisphere_elevation_deg: [25.0, 80.0],
            look_at_jitter_m: 0.05,
            roll_jitter_deg: 3.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LightingConfig {
    /// Ambient intensity range.
    pub ambient: [f64; 2],
    /// Inclusive range of directional lights.
    pub lights: [usize; 2],
    /// Intensity range of each light.
    pub intensity: [f64; 2],
    /// Blinn-Phong highlights.
    pub specular: bool,
}

impl Default for LightingConfig {
    fn default() -> Self {
        Self {
            ambient: [0.25, 0.45],
            lights: [1, 3],
            intensity: [0.4, 0.8],
            specular: true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepthModel {
    /// Exact depth, only quantised to millimetres.
    Ideal,
    /// Structured-light/stereo sensor: noise growing with distance, holes at depth
    /// discontinuities and grazing angles, millimetre quantisation.
    Realistic,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SensorConfig {
    pub depth_model: DepthModel,
    /// Axial noise sigma(z) = a + b (z - c)^2 metres (Nguyen et al. 2012, Kinect):
    /// [a, b, c].
    pub noise_coefficients: [f64; 3],
    /// A pixel next to a depth jump larger than this is a hole with `edge_hole_probability`.
    pub edge_jump_m: f64,
    pub edge_hole_probability: f64,
    /// Surfaces seen more obliquely than this (angle between normal and view ray) give no
    /// reading.
    pub grazing_angle_deg: f64,
    /// Readings beyond this are missing.
    pub max_range_m: f64,
}

impl Default for SensorConfig {
    fn default() -> Self {
        Self {
            depth_model: DepthModel::Realistic,
            noise_coefficients: [0.0012, 0.0019, 0.4],
            edge_jump_m: 0.02,
            edge_hole_probability: 0.6,
            grazing_angle_deg: 78.0,
            max_range_m: 4.0,
        }
    }
}

/// A parallel-jaw gripper approaching from above.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GripperConfig {
    pub min_width_m: f64,
    pub max_width_m: f64,
    /// How deep the fingers reach below the object's top, at most.
    pub finger_depth_m: f64,
    /// Finger size along the jaw axis and across it.
    pub finger_thickness_m: f64,
    pub finger_width_m: f64,
    /// Free space needed outside each contact for the open fingers.
    pub clearance_m: f64,
    /// Coulomb friction coefficient; the friction cone half-angle is atan(mu).
    pub friction: f64,
    /// Candidate axes sampled per object.
    pub candidates_per_object: usize,
    /// Quality at or above which a collision-free, antipodal grasp is labelled a success.
    pub success_quality: f64,
}

impl Default for GripperConfig {
    fn default() -> Self {
        Self {
            min_width_m: 0.005,
            max_width_m: 0.085,
            finger_depth_m: 0.03,
            finger_thickness_m: 0.008,
            finger_width_m: 0.02,
            clearance_m: 0.01,
            friction: 0.5,
            candidates_per_object: 8,
            success_quality: 0.5,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SuctionConfig {
    pub cup_radius_m: f64,
    /// The cup seals when its rim lies within this distance of the contact plane.
    pub seal_tolerance_m: f64,
    /// Largest angle between the surface normal and the vertical approach, degrees.
    pub max_tilt_deg: f64,
    /// Distance from the centre of mass (horizontal) at which quality reaches 0.
    pub max_com_distance_m: f64,
    pub candidates_per_object: usize,
    pub success_quality: f64,
}

impl Default for SuctionConfig {
    fn default() -> Self {
        Self {
            cup_radius_m: 0.012,
            seal_tolerance_m: 0.002,
            max_tilt_deg: 25.0,
            max_com_distance_m: 0.06,
            candidates_per_object: 4,
            success_quality: 0.5,
        }
    }
}

/// A planar textured target: an image printed at a physical size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// PNG file (RGB or grey), relative to the working directory.
    pub image: PathBuf,
    /// Printed width and height, metres.
    pub size_m: [f64; 2],
    /// Centre of the target in the cell frame, metres.
    pub position_m: [f64; 3],
    /// Orientation as roll, pitch, yaw (x, y, z, applied in that order), degrees. Zero: lying
    /// flat facing up, image x along cell x.
    pub rpy_deg: [f64; 3],
}

impl SceneConfig {
    /// Checks ranges serde cannot; the message names the key and the fix.
    pub fn check(&self) -> Result<(), String> {
        let range = |name: &str, r: [f64; 2], min: f64| {
            if r[0] >= min && r[1] >= r[0] && r[1].is_finite() {
                Ok(())
            } else {
                Err(format!(
                    "{name} must be [low, high] with {min} <= low <= high, got {r:?}"
                ))
            }
        };
        range("objects.size_m", self.objects.size_m, 1e-3)?;
        range(
            "camera.overhead_height_m",
            self.camera.overhead_height_m,
            0.1,
        )?;
        range(
            "camera.hemisphere_radius_m",
            self.camera.hemisphere_radius_m,
            0.1,
        )?;
        range(
            "camera.hemisphere_elevation_deg",
            self.camera.hemisphere_elevation_deg,
            1.0,
        )?;
        range("lighting.ambient", self.lighting.ambient, 0.0)?;
        range("lighting.intensity", self.lighting.intensity, 0.0)?;
        if self.camera.hemisphere_elevation_deg[1] > 90.0 {
            return Err("camera.hemisphere_elevation_deg must stay at or below 90".into());
        }
        if self.objects.count[0] > self.objects.count[1] || self.objects.count[1] > 64 {
            return Err(format!(
                "objects.count must be [low, high] with high <= 64, got {:?}",
                self.objects.count
            ));
        }
        if self.objects.kinds.is_empty() {
            return Err("objects.kinds must list at least one of box, cylinder, prism".into());
        }
        if self.lighting.lights[0] > self.lighting.lights[1] {
            return Err("lighting.lights must be [low, high]".into());
        }
        if !(1.0..=170.0).contains(&self.camera.horizontal_fov_deg) {
            return Err("camera.horizontal_fov_deg must be within 1..170".into());
        }
        if self
            .bin
            .inner_size_m
            .iter()
            .any(|s| *s <= self.objects.size_m[1])
        {
            return Err("bin.inner_size_m must exceed the largest object size".into());
        }
        if !(0.0..=1.0).contains(&self.sensor.edge_hole_probability) {
            return Err("sensor.edge_hole_probability must be within 0..1".into());
        }
        if self.gripper.min_width_m > self.gripper.max_width_m || self.gripper.friction <= 0.0 {
            return Err("gripper needs min_width_m <= max_width_m and friction > 0".into());
        }
        for t in &self.targets {
            if t.size_m.iter().any(|s| *s <= 0.0) {
                return Err(format!(
                    "target {} needs a positive size_m",
                    t.image.display()
                ));
            }
        }
        Ok(())
    }
}
