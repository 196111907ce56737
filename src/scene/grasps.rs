//! Grasp labels: parallel-jaw and suction candidates scored by analytic rules on the
//! scene geometry (ray casts against primitives and meshes alike).

use nalgebra::{Matrix3, Point3, Rotation3, UnitQuaternion, Vector3};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::camera::PinholeCamera;
use super::config::{GripperConfig, SuctionConfig};
use super::geometry::Ray;
use super::world::{Scene, SceneObject, Surface};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GripperKind {
    ParallelJaw,
    Suction,
}

impl GripperKind {
    /// perception_msgs/Grasp's gripper_type constant.
    pub fn message_constant(self) -> u8 {
        match self {
            Self::ParallelJaw => 0,
            Self::Suction => 1,
        }
    }
}

/// One grasp candidate with its analytic label and the image geometry a grasp-quality
/// network needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraspLabel {
    pub gripper: GripperKind,
    pub instance_id: u16,
    /// Analytic quality in [0, 1] (friction-cone alignment, torque about the centre of mass,
    /// seal, tilt; 0 when the gripper cannot get there).
    pub quality: f64,
    pub success: bool,
    /// Jaw opening at the contacts (0 for suction).
    pub width_m: f64,
    pub center_cell_m: [f64; 3],
    /// Unit approach direction (into the object) and jaw closing direction, cell frame.
    pub approach_cell: [f64; 3],
    pub closing_axis_cell: [f64; 3],
    /// The two jaw contacts, or the suction contact.
    pub contacts_cell_m: Vec<[f64; 3]>,
    pub center_px: [f64; 2],
    /// Closing direction in the image, radians from +x towards +y.
    pub angle_rad: f64,
    /// Depth (camera z) of the grasp centre.
    pub approach_depth_m: f64,
    /// Gripper pose in the camera optical frame: z = approach, x = closing direction.
    pub position_camera_m: [f64; 3],
    pub orientation_camera_xyzw: [f64; 4],
}

/// Parallel-jaw and suction candidates for every object, labelled by the analytic rules of
/// [`parallel_jaw`] and [`suction`]; those whose centre falls outside the image are dropped.
pub fn grasp_candidates(
    scene: &Scene,
    camera: &PinholeCamera,
    gripper: &GripperConfig,
    cup: &SuctionConfig,
    rng: &mut impl Rng,
) -> Vec<GraspLabel> {
    sample_grasps(scene, gripper, cup, rng).seen_by(scene, camera)
}

/// The labelled grasp candidates of a scene in the cell frame: sampled and scored once, seen
/// by as many cameras as render the scene.
pub struct SceneGrasps {
    /// Object index and grasp.
    grasps: Vec<(usize, CellGrasp)>,
}

/// Samples and scores `candidates_per_object` parallel-jaw and suction grasps per object.
pub fn sample_grasps(
    scene: &Scene,
    gripper: &GripperConfig,
    cup: &SuctionConfig,
    rng: &mut impl Rng,
) -> SceneGrasps {
    let mut grasps = Vec::new();
    for k in 0..scene.objects.len() {
        for _ in 0..gripper.candidates_per_object {
            if let Some(g) = parallel_jaw(scene, k, gripper, rng) {
                grasps.push((k, g));
            }
        }
        for _ in 0..cup.candidates_per_object {
            if let Some(g) = suction(scene, k, cup, rng) {
                grasps.push((k, g));
            }
        }
    }
    SceneGrasps { grasps }
}

impl SceneGrasps {
    /// The grasps whose centre `camera` sees, with their image geometry.
    pub fn seen_by(&self, scene: &Scene, camera: &PinholeCamera) -> Vec<GraspLabel> {
        self.grasps
            .iter()
            .filter_map(|(k, g)| g.in_image(camera, &scene.objects[*k]))
            .collect()
    }
}

/// A grasp in the cell frame before its image geometry is known.
#[derive(Clone)]
struct CellGrasp {
    gripper: GripperKind,
    quality: f64,
    success_quality: f64,
    width_m: f64,
    center: Point3<f64>,
    approach: Vector3<f64>,
    closing: Vector3<f64>,
    contacts: Vec<Point3<f64>>,
}

impl CellGrasp {
    fn in_image(&self, camera: &PinholeCamera, object: &SceneObject) -> Option<GraspLabel> {
        let (x, y, z) = camera.project(&self.center)?;
        if x < 0.0 || y < 0.0 || x >= camera.width as f64 || y >= camera.height as f64 {
            return None;
        }
        let (x2, y2, _) = camera.project(&(self.center + self.closing * 0.01))?;
        let camera_from_cell = camera.camera_from_cell();
        let position = camera_from_cell * self.center;
        let z_axis = self.approach;
        let x_axis = (self.closing - z_axis * self.closing.dot(&z_axis)).normalize();
        let y_axis = z_axis.cross(&x_axis);
        let cell_from_gripper = UnitQuaternion::from_rotation_matrix(
            &Rotation3::from_matrix_unchecked(Matrix3::from_columns(&[x_axis, y_axis, z_axis])),
        );
        let q = camera_from_cell.rotation * cell_from_gripper;
        let arr = |v: &Vector3<f64>| [v.x, v.y, v.z];
        Some(GraspLabel {
            gripper: self.gripper,
            instance_id: object.instance_id,
            quality: self.quality,
            success: self.quality >= self.success_quality,
            width_m: self.width_m,
            center_cell_m: arr(&self.center.coords),
            approach_cell: arr(&self.approach),
            closing_axis_cell: arr(&self.closing),
            contacts_cell_m: self.contacts.iter().map(|p| arr(&p.coords)).collect(),
            center_px: [x, y],
            angle_rad: (y2 - y).atan2(x2 - x),
            approach_depth_m: z,
            position_camera_m: arr(&position.coords),
            orientation_camera_xyzw: [q.i, q.j, q.k, q.w],
        })
    }
}

/// A top-down parallel-jaw grasp across object `k` along a random horizontal axis through a
/// point near its centre of mass, at most `finger_depth_m` below its top.
///
/// The contacts are where that axis enters the object from either side (ray casts against
/// the object's own surface, mesh or primitive). Quality = friction-cone alignment (1 when
/// both contact normals lie along the axis, 0 at the cone's edge atan(mu)) x torque term (1
/// when the axis passes through the centre of mass, 0 at half the maximum opening away), and
/// 0 when the opening is out of range or the open fingers, lowered vertically, or the palm
/// above them would hit anything (other objects, the bin, the object itself). With
/// `robustness_samples` > 0 the quality is the mean over that many perturbations of the
/// axis, its offset and the friction coefficient as well (Dex-Net's robust quality).
fn parallel_jaw(
    scene: &Scene,
    k: usize,
    cfg: &GripperConfig,
    rng: &mut impl Rng,
) -> Option<CellGrasp> {
    let object = &scene.objects[k];
    let (lo, _) = object.placed.aabb();
    let top = object.top_z_m;
    let z = top - cfg.finger_depth_m.min(0.5 * (top - lo.z));
    let mut angle = rng.gen_range(0.0..std::f64::consts::PI);
    let offset = rng.gen_range(-0.01..=0.01);
    if cfg.antipodal_sampling {
        // Dex-Net's antipodal sampling: close along the surface normal where a horizontal
        // ray from `angle` first meets the object at the grasp height.
        let com = object.center_of_mass();
        let towards = Vector3::new(angle.cos(), angle.sin(), 0.0);
        let start = Point3::new(com.x, com.y, z) - towards * 1.0;
        let hit = object.placed.intersect(&Ray::new(start, towards), 2.0)?;
        let horizontal = Vector3::new(hit.normal.x, hit.normal.y, 0.0);
        if horizontal.norm() > 0.3 {
            angle = (-horizontal.y).atan2(-horizontal.x);
        }
    }
    let mut grasp = jaw_grasp(scene, k, cfg, z, angle, offset, cfg.friction, true)?;
    if cfg.robustness_samples > 0 && grasp.quality > 0.0 {
        // The perturbed copies test the contacts alone: the nominal grasp's fingers and palm
        // were found clear, and millimetres of perturbation rarely change that.
        let mut total = grasp.quality;
        for _ in 0..cfg.robustness_samples {
            let da = rng.gen_range(-1.0..=1.0) * cfg.perturbation_angle_deg.to_radians();
            let dx = rng.gen_range(-1.0..=1.0) * cfg.perturbation_offset_m;
            let mu = cfg.friction * rng.gen_range(0.8..=1.2);
            total += jaw_grasp(scene, k, cfg, z, angle + da, offset + dx, mu, false)
                .map_or(0.0, |g| g.quality);
        }
        grasp.quality = total / (cfg.robustness_samples + 1) as f64;
    }
    Some(grasp)
}

/// The parallel-jaw grasp across object `k` at height `z` along direction `angle` (radians
/// from cell x), `offset` metres to the side of its centre of mass, with friction `mu`;
/// fingers and palm checked for collisions when `collisions`.
#[allow(clippy::too_many_arguments)]
fn jaw_grasp(
    scene: &Scene,
    k: usize,
    cfg: &GripperConfig,
    z: f64,
    angle: f64,
    offset: f64,
    mu: f64,
    collisions: bool,
) -> Option<CellGrasp> {
    let object = &scene.objects[k];
    let com = object.center_of_mass();
    let axis = Vector3::new(angle.cos(), angle.sin(), 0.0);
    let across = Vector3::new(-axis.y, axis.x, 0.0);
    let through = Point3::new(com.x, com.y, z) + across * offset;
    let reach = 1.0;
    let h1 = object
        .placed
        .intersect(&Ray::new(through - axis * reach, axis), 2.0 * reach)?;
    let h2 = object
        .placed
        .intersect(&Ray::new(through + axis * reach, -axis), 2.0 * reach)?;
    let p1 = through - axis * reach + axis * h1.t;
    let p2 = through + axis * reach - axis * h2.t;
    let width = (p2 - p1).dot(&axis);
    let cone = mu.atan();
    let misalignment = (h1.normal.dot(&-axis).clamp(-1.0, 1.0).acos())
        .max(h2.normal.dot(&axis).clamp(-1.0, 1.0).acos());
    let alignment = (1.0 - misalignment / cone).clamp(0.0, 1.0);
    let com_offset = (com - through).dot(&across).abs();
    let torque = (1.0 - com_offset / (cfg.max_width_m / 2.0)).clamp(0.0, 1.0);
    let fits = width >= cfg.min_width_m && width + 2.0 * cfg.clearance_m <= cfg.max_width_m;
    let free = fits
        && (!collisions
            || (fingers_clear(scene, &p1, &p2, &axis, &across, z, cfg)
                && palm_clear(scene, &p1, &p2, &axis, &across, z, cfg)));
    let quality = if free { alignment * torque } else { 0.0 };
    Some(CellGrasp {
        gripper: GripperKind::ParallelJaw,
        quality,
        success_quality: cfg.success_quality,
        width_m: width,
        center: Point3::from((p1.coords + p2.coords) / 2.0),
        approach: -Vector3::z(),
        closing: axis,
        contacts: vec![p1, p2],
    })
}

/// Nothing rises into the palm: the block spanning the open fingers across the jaw axis,
/// from `finger_depth_m` above the grasp height up.
fn palm_clear(
    scene: &Scene,
    p1: &Point3<f64>,
    p2: &Point3<f64>,
    axis: &Vector3<f64>,
    across: &Vector3<f64>,
    grasp_z: f64,
    cfg: &GripperConfig,
) -> bool {
    // The palm stops a few millimetres above the finger tips' reach.
    let palm_z = grasp_z + cfg.finger_depth_m + 0.003;
    let start_z = 3.0;
    let out = cfg.clearance_m + cfg.finger_thickness_m;
    let centre = Point3::from((p1.coords + p2.coords) / 2.0);
    let half_span = (p2 - p1).dot(axis) / 2.0 + out;
    [-1.0, -0.5, 0.0, 0.5, 1.0].iter().all(|a| {
        [-0.5, 0.0, 0.5].iter().all(|b| {
            let p = centre + axis * (a * half_span) + across * (b * cfg.finger_width_m);
            let ray = Ray::new(Point3::new(p.x, p.y, start_z), -Vector3::z());
            scene.cast(&ray, start_z - palm_z).is_none()
        })
    })
}

/// Lowering each open finger (outside its contact by the clearance) straight down to just
/// below the grasp height meets nothing.
fn fingers_clear(
    scene: &Scene,
    p1: &Point3<f64>,
    p2: &Point3<f64>,
    axis: &Vector3<f64>,
    across: &Vector3<f64>,
    grasp_z: f64,
    cfg: &GripperConfig,
) -> bool {
    let tip_z = grasp_z - 0.005;
    let start_z = 3.0;
    let out = cfg.clearance_m + cfg.finger_thickness_m / 2.0;
    [(*p1, -1.0), (*p2, 1.0)].iter().all(|(contact, side)| {
        let centre = contact + axis * (side * out);
        [-0.5, 0.0, 0.5].iter().all(|a| {
            [-0.5, 0.0, 0.5].iter().all(|b| {
                let p = centre
                    + axis * (a * cfg.finger_thickness_m)
                    + across * (b * cfg.finger_width_m);
                let ray = Ray::new(Point3::new(p.x, p.y, start_z), -Vector3::z());
                scene.cast(&ray, start_z - tip_z).is_none()
            })
        })
    })
}

/// A suction grasp at a point of object `k` seen from straight above, approaching along the
/// surface normal. Quality = seal (1 when the whole cup rim lies within the seal tolerance of
/// the contact plane on this object, else 0) x tilt term (1 for a horizontal face, 0 at the
/// maximum tilt) x centre-of-mass term (1 over it, 0 at the maximum distance); 0 when
/// something else lies on the approach line.
fn suction(scene: &Scene, k: usize, cfg: &SuctionConfig, rng: &mut impl Rng) -> Option<CellGrasp> {
    let object = &scene.objects[k];
    let com = object.center_of_mass();
    let r = 0.03;
    let start = Point3::new(
        com.x + rng.gen_range(-r..=r),
        com.y + rng.gen_range(-r..=r),
        3.0,
    );
    let down = Ray::new(start, -Vector3::z());
    let hit = scene.cast(&down, 10.0)?;
    if hit.surface != Surface::Object(k) {
        return None; // another object covers this point from above
    }
    let p = down.at(hit.hit.t);
    let n = hit.hit.normal;
    let tilt = n.z.clamp(-1.0, 1.0).acos();
    let helper = if n.x.abs() < 0.9 {
        Vector3::x()
    } else {
        Vector3::y()
    };
    let u = n.cross(&helper).normalize();
    let v = n.cross(&u);
    let sealed = (0..12).all(|i| {
        let a = std::f64::consts::TAU * i as f64 / 12.0;
        let rim = p + (u * a.cos() + v * a.sin()) * cfg.cup_radius_m;
        let ray = Ray::new(rim + n * 0.05, -n);
        match scene.cast(&ray, 0.05 + 2.0 * cfg.seal_tolerance_m) {
            Some(h) if h.surface == Surface::Object(k) => {
                (ray.at(h.hit.t) - p).dot(&n).abs() <= cfg.seal_tolerance_m
            }
            _ => false,
        }
    });
    // The cup travels along the normal: nothing may lie on that line.
    let approach_line = Ray::new(p + n * 1.0, -n);
    let clear = scene.cast(&approach_line, 2.0).is_some_and(|h| {
        h.surface == Surface::Object(k) && (approach_line.at(h.hit.t) - p).norm() < 1e-6
    });
    let tilt_term = (1.0 - tilt / cfg.max_tilt_deg.to_radians()).clamp(0.0, 1.0);
    let com_term = (1.0 - (p.xy() - com.xy()).norm() / cfg.max_com_distance_m).clamp(0.0, 1.0);
    let quality = if sealed && clear {
        tilt_term * com_term
    } else {
        0.0
    };
    Some(CellGrasp {
        gripper: GripperKind::Suction,
        quality,
        success_quality: cfg.success_quality,
        width_m: 0.0,
        center: p,
        approach: -n,
        closing: u,
        contacts: vec![p],
    })
}
