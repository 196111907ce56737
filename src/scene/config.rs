//! The generator's configuration: what every scene is sampled from, read from YAML.

use std::path::PathBuf;

use rand::Rng;
use serde::{Deserialize, Serialize};

pub use super::appearance::{ColourConfig, ImagingConfig, SurfaceConfig};
pub use super::families::ShapeFamily;
pub use super::mesh_io::{MeshSource, Units};
pub use super::sensor::{DepthModel, SensorConfig};

/// A value given either as one number or as a range `[low, high]` drawn uniformly per scene.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Span {
    Fixed(f64),
    Range([f64; 2]),
}

impl Span {
    /// A fixed value consumes no randomness, so configs without ranges keep their streams.
    pub fn sample(self, rng: &mut impl Rng) -> f64 {
        match self {
            Span::Fixed(v) => v,
            Span::Range([lo, hi]) if hi > lo => rng.gen_range(lo..=hi),
            Span::Range([lo, _]) => lo,
        }
    }

    pub fn bounds(self) -> [f64; 2] {
        match self {
            Span::Fixed(v) => [v, v],
            Span::Range(r) => r,
        }
    }

    fn check(self, name: &str, min: f64, max: f64) -> Result<(), String> {
        let [lo, hi] = self.bounds();
        if lo.is_finite() && hi.is_finite() && min <= lo && lo <= hi && hi <= max {
            Ok(())
        } else {
            Err(format!(
                "{name} must be a number or [low, high] within {min}..{max} with low <= high, got {self:?}"
            ))
        }
    }
}

/// Everything the generator samples from, with the defaults of a bin-picking cell seen by a
/// RealSense-class RGB-D camera. Read from YAML (`--config FILE`); omitted keys keep their
/// defaults, unknown keys are an error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SceneConfig {
    pub bin: BinConfig,
    pub objects: ObjectsConfig,
    pub floor: FloorConfig,
    pub camera: CameraConfig,
    pub lighting: LightingConfig,
    /// The colour camera's exposure, white balance, noise and blur.
    pub imaging: ImagingConfig,
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
    /// Frames rendered of each settled pile, each from its own camera with its own imaging
    /// and sensor noise: the pile, its physics and its grasp labels are made once.
    pub views_per_scene: usize,
}

impl Default for SceneConfig {
    fn default() -> Self {
        Self {
            bin: BinConfig::default(),
            objects: ObjectsConfig::default(),
            floor: FloorConfig::default(),
            camera: CameraConfig::default(),
            lighting: LightingConfig::default(),
            imaging: ImagingConfig::default(),
            sensor: SensorConfig::default(),
            gripper: GripperConfig::default(),
            suction: SuctionConfig::default(),
            targets: Vec::new(),
            boundary_px: 2,
            write_normals: false,
            fixed_scene_seed: None,
            views_per_scene: 1,
        }
    }
}

/// An open box resting on the cell floor, centred on the cell origin. Every size may be a
/// range drawn per scene.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BinConfig {
    /// Inner length (x) and width (y), metres.
    pub inner_size_m: [Span; 2],
    pub wall_height_m: Span,
    pub wall_thickness_m: Span,
    pub floor_thickness_m: Span,
    /// Turn about the vertical, degrees (the bin's sides need not line up with the camera).
    pub yaw_deg: Span,
    /// Tilt of the whole bin about a horizontal axis of random direction, degrees (a bin on
    /// a rack or an uneven floor). Only with `objects.placement: physics`.
    pub tilt_deg: Span,
    /// The colour when `colours` is not given, 8-bit RGB.
    pub color: [u8; 3],
    /// Colours drawn per scene (hue, saturation, value ranges); overrides `color`.
    pub colours: Option<ColourConfig>,
    /// Finish and texture; absent: matte and plain.
    pub surface: Option<SurfaceConfig>,
}

impl Default for BinConfig {
    fn default() -> Self {
        Self {
            inner_size_m: [Span::Fixed(0.56), Span::Fixed(0.38)],
            wall_height_m: Span::Fixed(0.16),
            wall_thickness_m: Span::Fixed(0.012),
            floor_thickness_m: Span::Fixed(0.012),
            yaw_deg: Span::Fixed(0.0),
            tilt_deg: Span::Fixed(0.0),
            color: [60, 90, 140],
            colours: None,
            surface: None,
        }
    }
}

/// The cell floor around the bin.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FloorConfig {
    /// Absent: a light grey with a slight tint.
    pub colours: Option<ColourConfig>,
    /// Absent: matte and plain.
    pub surface: Option<SurfaceConfig>,
}

/// How object pixels are labelled in the semantic mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectClasses {
    /// One class per shape family: box, cylinder, prism, then the other families drawn.
    ByShape,
    /// A single `object` class.
    Single,
}

/// How objects come to rest in the bin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Lowered one by one onto the bin floor or a flat top, upright: the first generator's
    /// scenes (box, cylinder and prism only).
    Lowered,
    /// Dropped into the bin at random orientations and settled by a rigid-body engine:
    /// leaning, stacked, touching piles.
    Physics,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectsConfig {
    /// Inclusive range of objects per scene.
    pub count: [usize; 2],
    /// The families objects are drawn from, uniformly (`mesh`: the files of `meshes`).
    #[serde(alias = "kinds")]
    pub families: Vec<ShapeFamily>,
    /// Mesh files (OBJ, STL, PLY), each a file or a folder, with their units.
    pub meshes: Vec<MeshSource>,
    /// Range of the largest dimension of a procedural object (and of each dimension of box,
    /// cylinder and prism), metres. Mesh files keep their own size.
    pub size_m: [f64; 2],
    pub classes: ObjectClasses,
    pub placement: Placement,
    /// Lowered placement: attempts per object before it is left out.
    pub placement_attempts: usize,
    /// Physics: objects that end outside the bin stay on the floor (else they are removed).
    pub keep_outside: bool,
    /// Physics: Coulomb friction between objects and with the bin.
    pub friction: Span,
    /// Object colours; absent: any hue, saturation 0.45-0.9, value 0.5-0.95.
    pub colours: Option<ColourConfig>,
    /// Finish and texture; absent: plain plastic with a small highlight.
    pub surface: Option<SurfaceConfig>,
}

impl Default for ObjectsConfig {
    fn default() -> Self {
        Self {
            count: [4, 10],
            families: vec![ShapeFamily::Box, ShapeFamily::Cylinder, ShapeFamily::Prism],
            meshes: Vec::new(),
            size_m: [0.035, 0.12],
            classes: ObjectClasses::ByShape,
            placement: Placement::Lowered,
            placement_attempts: 40,
            keep_outside: false,
            friction: Span::Range([0.4, 0.9]),
            colours: None,
            surface: None,
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
    /// image centre plus `principal_point_jitter_px`.
    pub horizontal_fov_deg: Span,
    /// Principal point offset from the image centre (each axis, +-), pixels.
    pub principal_point_jitter_px: f64,
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
            horizontal_fov_deg: Span::Fixed(69.0),
            principal_point_jitter_px: 0.0,
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
    /// Elevation of each light above the floor plane, range in degrees.
    pub elevation_deg: [f64; 2],
    /// Colour of each light (value scales nothing: intensity does); absent: white.
    pub colours: Option<ColourConfig>,
    /// Blinn-Phong highlights.
    pub specular: bool,
    /// Objects and bin walls cast shadows (one shadow ray per light and pixel).
    pub shadows: bool,
}

impl Default for LightingConfig {
    fn default() -> Self {
        Self {
            ambient: [0.25, 0.45],
            lights: [1, 3],
            intensity: [0.4, 0.8],
            elevation_deg: [30.0, 85.0],
            colours: None,
            specular: true,
            shadows: false,
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
    /// Close along the surface normal at a random point of the object's outline (Dex-Net's
    /// antipodal sampling) instead of along a random direction.
    pub antipodal_sampling: bool,
    /// Perturbed copies each candidate is also evaluated under (axis angle, offset,
    /// friction); its quality is the mean. 0: the nominal grasp only.
    pub robustness_samples: usize,
    /// Largest perturbation of the jaw axis, degrees.
    pub perturbation_angle_deg: f64,
    /// Largest sideways perturbation of the jaw axis, metres.
    pub perturbation_offset_m: f64,
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
            antipodal_sampling: false,
            robustness_samples: 0,
            perturbation_angle_deg: 5.0,
            perturbation_offset_m: 0.003,
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
        if self.objects.families.is_empty() {
            return Err(format!(
                "objects.families must list at least one of {}",
                ShapeFamily::ALL.map(ShapeFamily::name).join(", ")
            ));
        }
        let wants_meshes = self.objects.families.contains(&ShapeFamily::Mesh);
        if wants_meshes != !self.objects.meshes.is_empty() {
            return Err(if wants_meshes {
                "objects.families names mesh but objects.meshes lists no file or folder: add \
                 `meshes: [{path: parts/, units: mm}]`"
                    .into()
            } else {
                "objects.meshes is given but objects.families does not name mesh: add mesh to \
                 families"
                    .into()
            });
        }
        if self.objects.placement == Placement::Lowered {
            if let Some(f) = self.objects.families.iter().find(|f| {
                !matches!(
                    f,
                    ShapeFamily::Box | ShapeFamily::Cylinder | ShapeFamily::Prism
                )
            }) {
                return Err(format!(
                    "objects.placement lowered only stands box, cylinder and prism upright; \
                     family {} needs `placement: physics`",
                    f.name()
                ));
            }
            if self.bin.yaw_deg.bounds() != [0.0, 0.0] || self.bin.tilt_deg.bounds() != [0.0, 0.0] {
                return Err("bin.yaw_deg and bin.tilt_deg need objects.placement: physics".into());
            }
        }
        if self.lighting.lights[0] > self.lighting.lights[1] {
            return Err("lighting.lights must be [low, high]".into());
        }
        range("lighting.elevation_deg", self.lighting.elevation_deg, 1.0)?;
        if self.lighting.elevation_deg[1] > 90.0 {
            return Err("lighting.elevation_deg must stay at or below 90".into());
        }
        self.camera
            .horizontal_fov_deg
            .check("camera.horizontal_fov_deg", 1.0, 170.0)?;
        if !(0.0..=1000.0).contains(&self.camera.principal_point_jitter_px) {
            return Err("camera.principal_point_jitter_px must be within 0..1000".into());
        }
        if self.camera.overhead_tilt_deg > 60.0 || self.camera.overhead_tilt_deg < 0.0 {
            return Err("camera.overhead_tilt_deg must be within 0..60".into());
        }
        let bin = &self.bin;
        for (name, span, min, max) in [
            ("bin.inner_size_m[0]", bin.inner_size_m[0], 0.05, 5.0),
            ("bin.inner_size_m[1]", bin.inner_size_m[1], 0.05, 5.0),
            ("bin.wall_height_m", bin.wall_height_m, 0.0, 2.0),
            ("bin.wall_thickness_m", bin.wall_thickness_m, 1e-3, 0.2),
            ("bin.floor_thickness_m", bin.floor_thickness_m, 1e-3, 0.2),
            ("bin.yaw_deg", bin.yaw_deg, -180.0, 180.0),
            ("bin.tilt_deg", bin.tilt_deg, 0.0, 30.0),
            ("objects.friction", self.objects.friction, 0.0, 5.0),
        ] {
            span.check(name, min, max)?;
        }
        if bin
            .inner_size_m
            .iter()
            .any(|s| s.bounds()[0] <= self.objects.size_m[1])
        {
            return Err("bin.inner_size_m must exceed the largest object size".into());
        }
        for (name, surface) in [
            ("bin.surface", &bin.surface),
            ("floor.surface", &self.floor.surface),
            ("objects.surface", &self.objects.surface),
        ] {
            if let Some(surface) = surface {
                surface.check().map_err(|e| format!("{name}: {e}"))?;
            }
        }
        for (name, colours) in [
            ("bin.colours", &bin.colours),
            ("floor.colours", &self.floor.colours),
            ("objects.colours", &self.objects.colours),
            ("lighting.colours", &self.lighting.colours),
        ] {
            if let Some(colours) = colours {
                colours.check().map_err(|e| format!("{name}: {e}"))?;
            }
        }
        self.imaging
            .check()
            .map_err(|e| e.within("imaging").to_string())?;
        self.sensor.check().map_err(|e| e.to_string())?;
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
