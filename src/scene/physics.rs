//! Piles settled by a rigid-body engine: bodies are dropped at random orientations into an
//! open bin and stepped with rapier until the pile is at rest, so scenes show leaning,
//! tilted, stacked and touching objects instead of objects lowered one by one onto flat
//! supports. The constants below were tuned on mixed piles of cuboids, cylinders and random
//! convex hulls (1 to 8 cm) in a 40 x 30 cm bin; the numbers quoted are from those runs.
//!
//! Everything is in the cell frame: z up, the cell floor is the plane z = 0 (a static
//! half-space, so bodies that bounce out of the bin land on it), the bin is a set of static
//! cuboid slabs centred on the origin. Pure Rust, no ROS; deterministic for a given seed and
//! input (rapier is built without its `parallel` feature and hashes with a fixed state).

use nalgebra::{Isometry3, Point3, Quaternion, Translation3, UnitQuaternion, Vector3};
use rand::seq::SliceRandom;
use rand::Rng;
use rapier3d_f64::prelude::{
    CCDSolver, ColliderBuilder, ColliderSet, DefaultBroadPhase, ImpulseJointSet,
    IntegrationParameters, IslandManager, MultibodyJointSet, NarrowPhase, PhysicsPipeline,
    RigidBodyBuilder, RigidBodyHandle, RigidBodySet, SharedShape,
};
use thiserror::Error;

/// Standard gravity, m/s².
const GRAVITY_M_S2: f64 = 9.81;

/// Rapier's tolerances (allowed penetration 0.001 x this, contact prediction 0.002 x, largest
/// push-out speed 10 x per second) are tuned for metre-sized bodies; ours are a few cm, and
/// the default 1.0 would allow 1 mm of penetration. 0.05 allows 0.05 mm.
const LENGTH_UNIT_M: f64 = 0.05;

/// Step length and solver iterations. On 100 mixed 25-body piles, 1/200 s gave no fewer
/// penetrations, only more steps; 8 iterations cost 1.3x and once left 5 mm of penetration
/// where 4 left at most 0.5 mm.
const STEP_S: f64 = 1.0 / 100.0;
const SOLVER_ITERATIONS: usize = 4;

/// Bodies fall no faster than this (reached after a 5 cm drop), so they move at most 1 cm a
/// step. Uncapped, bodies falling from the top layers (~3 m/s) hammered thin bodies through
/// the 1 cm bin floor in 8 of 100 mixed 25-body piles; rapier's CCD left 1 of 100, soft CCD
/// 2 of 100 and made piles chatter; capped: none in 300. Only final poses are used, so the
/// slower fall costs nothing visible.
const MAX_SPEED_M_S: f64 = 1.0;

/// Natural frequency of rapier's soft contacts (default 30 Hz). Softer contacts sink under
/// load: light bodies under a stack interpenetrated by up to 7 mm at 30 Hz, 2.8 mm at 60 Hz;
/// stiffer than 120 Hz made small bodies chatter and never rest.
const CONTACT_STIFFNESS_HZ: f64 = 120.0;

/// A body may sleep once it moves slower than this, …
const SLEEP_LINEAR_SPEED_M_S: f64 = 0.02;
/// … turns slower than this (rapier's default), …
const SLEEP_ANGULAR_SPEED_RAD_S: f64 = 0.5;
/// … for this long (rapier's 2 s default wastes steps: a pile at rest stays at rest).
const TIME_UNTIL_SLEEP_S: f64 = 0.3;

/// Small light bodies wedged in a pile can chatter in place forever (a contact manifold that
/// flips between features) and keep the whole pile awake, so a pile also counts as at rest
/// once no body moved more than this …
const QUIET_TRANSLATION_M: f64 = 0.002;
/// … or turned more than this (3 degrees) …
const QUIET_ROTATION_RAD: f64 = 0.05;
/// … between two snapshots this many steps (0.25 s) apart; a body that is really sliding or
/// tipping moves more. About 5 in 100 mixed 25-body piles still run to `max_steps`: one body
/// spins in place at a few rad/s and damping does not stop it.
const QUIET_WINDOW_STEPS: usize = 25;

/// After settling, this many steps without gravity, all bodies woken and their velocities
/// zeroed before each, let the contact solver push apart what still interpenetrates (bodies
/// under load, chattering bodies, stale contacts of sleeping ones) without adding motion:
/// the worst penetration over 100 mixed piles went from 4.3 mm to under 0.6 mm. Bodies move
/// by at most the penetration they had.
const DEPENETRATION_STEPS: usize = 30;

/// Damping so tumbling and sliding die out quickly; small enough that falls look natural
/// (1/s: velocity is divided by 1 + damping * dt each step).
const LINEAR_DAMPING_PER_S: f64 = 0.5;
const ANGULAR_DAMPING_PER_S: f64 = 2.0;

/// Clearance between the start bounding spheres of neighbouring bodies and above the bin
/// floor.
const START_GAP_M: f64 = 0.005;

/// Side faces of the prism that stands in for a cylinder. Rapier's own cylinder rolls and
/// spins in piles (5x the steps to rest for 30 bodies); the circumscribed prism contains the
/// cylinder and leaves at most r * (1 / cos(pi / 24) - 1), under 1 % of the radius, of gap.
const CYLINDER_SIDES: usize = 24;

/// Points closer than this to the plane (or line) of the others count as coplanar (collinear)
/// when checking that a convex hull has volume.
const HULL_FLATNESS_TOLERANCE_M: f64 = 1e-6;

/// A body's collision shape in its own frame (the frame whose pose `settle_pile` returns).
#[derive(Debug, Clone, PartialEq)]
pub enum BodyShape {
    /// A box centred on the body origin, axis-aligned in the body frame.
    Cuboid { half_extents_m: [f64; 3] },
    /// A cylinder centred on the body origin with its axis along the body's local z.
    /// Simulated as the circumscribed 24-sided prism (see `CYLINDER_SIDES`).
    Cylinder { radius_m: f64, half_height_m: f64 },
    /// The convex hull of these points. A non-convex mesh collides as its hull: conservative,
    /// so the real surfaces never interpenetrate more than the hulls do. Needs at least 4
    /// points that are not coplanar; anything flatter is refused
    /// ([`PileError::InvalidBody`]) rather than silently thickened, so the caller decides.
    ConvexHull { points_m: Vec<Point3<f64>> },
}

/// A static cuboid of the bin (floor slab or wall).
#[derive(Debug, Clone, PartialEq)]
pub struct StaticSlab {
    pub half_extents_m: [f64; 3],
    pub cell_from_slab: Isometry3<f64>,
}

/// How a pile is dropped and settled. The bin is centred on the cell origin.
#[derive(Debug, Clone, PartialEq)]
pub struct PileSettings {
    /// x range and y range (cell frame, m) over which bodies start: the bin's inner area,
    /// usually less a margin.
    pub drop_region_m: ([f64; 2], [f64; 2]),
    /// Height of the top of the bin floor slab (cell frame); the lowest start layer sits just
    /// above it.
    pub bin_floor_z_m: f64,
    /// Inner footprint of the bin (x, y), centred on the origin: a body whose centre of mass
    /// ends outside it, or below `bin_floor_z_m`, is outside the bin.
    pub bin_inner_size_m: [f64; 2],
    /// Coulomb friction coefficient of every contact.
    pub friction: f64,
    /// Restitution (bounciness), 0..=1, of every contact.
    pub restitution: f64,
    /// Density of every body, used for masses and inertias.
    pub density_kg_m3: f64,
    /// Steps (of 1/100 s) after which settling stops even if the pile is not at rest.
    pub max_steps: usize,
    /// Bodies that end outside the bin: kept where they lie (usually the cell floor) if true,
    /// removed (`None`) if false.
    pub keep_outside: bool,
}

impl PileSettings {
    /// Settings for a bin with this inner footprint and floor-top height: bodies start over
    /// the inner area less 1 cm on each side, friction 0.5, restitution 0.1, 500 kg/m³ (plastic
    /// parts and cardboard), at most 6 s of simulated time (mixed piles of 25 rest after 2 s on
    /// average), outside bodies removed.
    pub fn for_bin(bin_inner_size_m: [f64; 2], bin_floor_z_m: f64) -> Self {
        let margin_m = 0.01;
        let half_x_m = (bin_inner_size_m[0] / 2.0 - margin_m).max(0.0);
        let half_y_m = (bin_inner_size_m[1] / 2.0 - margin_m).max(0.0);
        Self {
            drop_region_m: ([-half_x_m, half_x_m], [-half_y_m, half_y_m]),
            bin_floor_z_m,
            bin_inner_size_m,
            friction: 0.5,
            restitution: 0.1,
            density_kg_m3: 500.0,
            max_steps: 600,
            keep_outside: false,
        }
    }

    fn validate(&self) -> Result<(), PileError> {
        let (x_range_m, y_range_m) = self.drop_region_m;
        let finite = [
            x_range_m[0],
            x_range_m[1],
            y_range_m[0],
            y_range_m[1],
            self.bin_floor_z_m,
            self.bin_inner_size_m[0],
            self.bin_inner_size_m[1],
            self.friction,
            self.restitution,
            self.density_kg_m3,
        ]
        .iter()
        .all(|v| v.is_finite());
        if !finite {
            return Err(PileError::settings(
                "a setting is NaN or infinite",
                "give finite numbers",
            ));
        }
        if x_range_m[0] > x_range_m[1] || y_range_m[0] > y_range_m[1] {
            return Err(PileError::settings(
                "drop_region_m has a range whose minimum exceeds its maximum",
                "give each range as [min, max]",
            ));
        }
        if self.bin_inner_size_m.iter().any(|&s| s <= 0.0) {
            return Err(PileError::settings(
                "bin_inner_size_m is not positive",
                "give the bin's inner x and y size in metres",
            ));
        }
        if self.friction < 0.0 {
            return Err(PileError::settings("friction is negative", "use 0 or more"));
        }
        if !(0.0..=1.0).contains(&self.restitution) {
            return Err(PileError::settings(
                "restitution is outside 0..=1",
                "use 0 (no bounce) to 1 (elastic)",
            ));
        }
        if self.density_kg_m3 <= 0.0 {
            return Err(PileError::settings(
                "density_kg_m3 is not positive",
                "use a density such as 500",
            ));
        }
        Ok(())
    }
}

/// The settled pile.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    /// Final pose of each input body's frame, in input order; `None`: ended outside the bin
    /// and removed.
    pub cell_from_body: Vec<Option<Isometry3<f64>>>,
    /// Steps simulated.
    pub steps: usize,
    /// True if stepping stopped because the pile came to rest: every body asleep, or none
    /// moved more than 2 mm or 3 degrees over the last 0.25 s (small contact jitter can keep
    /// rapier from ever putting a pile to sleep); false if `max_steps` ran out first.
    pub at_rest: bool,
}

/// Why a pile could not be built.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PileError {
    #[error("body {index}: {problem}; fix: {fix}")]
    InvalidBody {
        index: usize,
        problem: String,
        fix: String,
    },
    #[error("static slab {index}: {problem}; fix: {fix}")]
    InvalidSlab {
        index: usize,
        problem: String,
        fix: String,
    },
    #[error("pile settings: {problem}; fix: {fix}")]
    InvalidSettings { problem: String, fix: String },
}

impl PileError {
    fn body(index: usize, problem: &str, fix: &str) -> Self {
        Self::InvalidBody {
            index,
            problem: problem.to_owned(),
            fix: fix.to_owned(),
        }
    }

    fn settings(problem: &str, fix: &str) -> Self {
        Self::InvalidSettings {
            problem: problem.to_owned(),
            fix: fix.to_owned(),
        }
    }
}

impl BodyShape {
    /// The simulated collision shape and its pose in the body frame (identity for all shapes
    /// today). Errors name body `index`.
    fn collider_in_body(&self, index: usize) -> Result<(SharedShape, Isometry3<f64>), PileError> {
        match self {
            Self::Cuboid { half_extents_m } => {
                if half_extents_m.iter().any(|h| !(h.is_finite() && *h > 0.0)) {
                    return Err(PileError::body(
                        index,
                        "a cuboid half extent is not a positive finite number",
                        "give half extents in metres, all > 0",
                    ));
                }
                let [hx_m, hy_m, hz_m] = *half_extents_m;
                Ok((SharedShape::cuboid(hx_m, hy_m, hz_m), Isometry3::identity()))
            }
            Self::Cylinder {
                radius_m,
                half_height_m,
            } => {
                if [*radius_m, *half_height_m]
                    .iter()
                    .any(|v| !(v.is_finite() && *v > 0.0))
                {
                    return Err(PileError::body(
                        index,
                        "a cylinder radius or half height is not a positive finite number",
                        "give both in metres, > 0",
                    ));
                }
                let shape = cylinder_prism(*radius_m, *half_height_m).ok_or_else(|| {
                    PileError::body(
                        index,
                        "the cylinder is too small to build its prism",
                        "give a radius and half height of at least a few micrometres",
                    )
                })?;
                Ok((shape, Isometry3::identity()))
            }
            Self::ConvexHull { points_m } => {
                if points_m
                    .iter()
                    .any(|p| !p.coords.iter().all(|c| c.is_finite()))
                {
                    return Err(PileError::body(
                        index,
                        "a convex-hull point is NaN or infinite",
                        "give finite coordinates in metres",
                    ));
                }
                if !has_volume(points_m) {
                    return Err(PileError::body(
                        index,
                        "the convex-hull points are fewer than 4 or all (nearly) coplanar",
                        "give at least 4 points that span a volume, or use a thin Cuboid",
                    ));
                }
                let shape = SharedShape::convex_hull(points_m).ok_or_else(|| {
                    PileError::body(
                        index,
                        "the convex hull of the points could not be computed",
                        "give points that span a volume, without near-duplicates",
                    )
                })?;
                Ok((shape, Isometry3::identity()))
            }
        }
    }

    /// Centre (body frame) and radius of a sphere that encloses the shape in any orientation
    /// about that centre.
    fn bounding_sphere_m(&self) -> (Point3<f64>, f64) {
        match self {
            Self::Cuboid { half_extents_m } => {
                (Point3::origin(), Vector3::from(*half_extents_m).norm())
            }
            Self::Cylinder {
                radius_m,
                half_height_m,
            } => {
                // The simulated prism's corners stick out a little beyond the cylinder.
                let corner_radius_m =
                    radius_m / (std::f64::consts::PI / CYLINDER_SIDES as f64).cos();
                (Point3::origin(), corner_radius_m.hypot(*half_height_m))
            }
            Self::ConvexHull { points_m } => {
                let mut min_m = Vector3::repeat(f64::INFINITY);
                let mut max_m = Vector3::repeat(f64::NEG_INFINITY);
                for p in points_m {
                    min_m = min_m.inf(&p.coords);
                    max_m = max_m.sup(&p.coords);
                }
                let centre_m = Point3::from((min_m + max_m) / 2.0);
                let radius_m = points_m
                    .iter()
                    .map(|p| (p - centre_m).norm())
                    .fold(0.0, f64::max);
                (centre_m, radius_m)
            }
        }
    }
}

/// True if the points span a volume: at least 4, not all on one plane (within
/// `HULL_FLATNESS_TOLERANCE_M`). Greedy: the farthest point from the first, then from that
/// line, then from that plane.
fn has_volume(points_m: &[Point3<f64>]) -> bool {
    let Some(first) = points_m.first() else {
        return false;
    };
    let farthest = |distance: &dyn Fn(&Point3<f64>) -> f64| {
        points_m
            .iter()
            .map(|p| (distance(p), p))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(d, p)| (d, *p))
    };
    let Some((d1_m, second)) = farthest(&|p| (p - first).norm()) else {
        return false;
    };
    if d1_m <= HULL_FLATNESS_TOLERANCE_M {
        return false;
    }
    let axis = (second - first) / d1_m;
    let Some((d2_m, third)) = farthest(&|p| (p - first).cross(&axis).norm()) else {
        return false;
    };
    if d2_m <= HULL_FLATNESS_TOLERANCE_M {
        return false;
    }
    let normal = (second - first).cross(&(third - first)).normalize();
    farthest(&|p| (p - first).dot(&normal).abs())
        .is_some_and(|(d3_m, _)| d3_m > HULL_FLATNESS_TOLERANCE_M)
}

/// The `CYLINDER_SIDES`-sided prism circumscribed about the cylinder of this radius and half
/// height along z. Faces sit at multiples of 15 degrees, so the prism's extent along x and y
/// equals the radius.
fn cylinder_prism(radius_m: f64, half_height_m: f64) -> Option<SharedShape> {
    let step_rad = std::f64::consts::TAU / CYLINDER_SIDES as f64;
    let vertex_radius_m = radius_m / (step_rad / 2.0).cos();
    let points_m: Vec<Point3<f64>> = (0..CYLINDER_SIDES)
        .flat_map(|k| {
            let angle_rad = (k as f64 + 0.5) * step_rad;
            let x_m = vertex_radius_m * angle_rad.cos();
            let y_m = vertex_radius_m * angle_rad.sin();
            [
                Point3::new(x_m, y_m, -half_height_m),
                Point3::new(x_m, y_m, half_height_m),
            ]
        })
        .collect();
    SharedShape::convex_hull(&points_m)
}

/// A rotation drawn uniformly from SO(3) (Shoemake's subgroup algorithm).
fn uniform_rotation(rng: &mut impl Rng) -> UnitQuaternion<f64> {
    let u1: f64 = rng.gen();
    let angle2_rad = std::f64::consts::TAU * rng.gen::<f64>();
    let angle3_rad = std::f64::consts::TAU * rng.gen::<f64>();
    let a = (1.0 - u1).sqrt();
    let b = u1.sqrt();
    UnitQuaternion::from_quaternion(Quaternion::new(
        b * angle3_rad.cos(),
        a * angle2_rad.sin(),
        a * angle2_rad.cos(),
        b * angle3_rad.sin(),
    ))
}

/// Start poses: a grid of columns over the drop region, layers stacked from just above the
/// bin floor, each body's bounding sphere jittered inside its own grid cell so no two start
/// spheres overlap. Bodies are dealt to cells in random order.
fn start_poses(
    bodies: &[BodyShape],
    settings: &PileSettings,
    rng: &mut impl Rng,
) -> Vec<Isometry3<f64>> {
    let spheres: Vec<(Point3<f64>, f64)> =
        bodies.iter().map(BodyShape::bounding_sphere_m).collect();
    let max_radius_m = spheres.iter().map(|s| s.1).fold(0.0, f64::max);
    let cell_m = 2.0 * max_radius_m + START_GAP_M;
    let (x_range_m, y_range_m) = settings.drop_region_m;
    let width_m = [x_range_m[1] - x_range_m[0], y_range_m[1] - y_range_m[0]];
    // At least one column even if the region is narrower than a body (it then starts
    // centred), and no more than there are bodies.
    let columns = width_m.map(|w| ((w / cell_m).floor() as usize).clamp(1, bodies.len().max(1)));
    let pitch_m = [0, 1].map(|a| (width_m[a] / columns[a] as f64).max(cell_m));
    let origin_m = [
        (x_range_m[0] + x_range_m[1]) / 2.0 - pitch_m[0] * columns[0] as f64 / 2.0,
        (y_range_m[0] + y_range_m[1]) / 2.0 - pitch_m[1] * columns[1] as f64 / 2.0,
    ];
    let per_layer = columns[0] * columns[1];

    let mut order: Vec<usize> = (0..bodies.len()).collect();
    order.shuffle(rng);
    let mut cell_from_body = vec![Isometry3::identity(); bodies.len()];
    for (slot, &body) in order.iter().enumerate() {
        let layer = slot / per_layer;
        let column_x = slot % per_layer % columns[0];
        let column_y = slot % per_layer / columns[0];
        let (centre_in_body_m, radius_m) = spheres[body];
        // Room the sphere has to move inside its cell without reaching a neighbour's.
        let slack_m =
            [pitch_m[0], pitch_m[1], cell_m].map(|p| ((p - START_GAP_M) / 2.0 - radius_m).max(0.0));
        let mut jitter = |slack: f64| {
            if slack > 0.0 {
                rng.gen_range(-slack..=slack)
            } else {
                0.0
            }
        };
        let centre_in_cell_m = Vector3::new(
            origin_m[0] + (column_x as f64 + 0.5) * pitch_m[0] + jitter(slack_m[0]),
            origin_m[1] + (column_y as f64 + 0.5) * pitch_m[1] + jitter(slack_m[1]),
            settings.bin_floor_z_m
                + START_GAP_M
                + (layer as f64 + 0.5) * cell_m
                + jitter(slack_m[2]),
        );
        let rotation = uniform_rotation(rng);
        let translation_m = centre_in_cell_m - rotation * centre_in_body_m.coords;
        cell_from_body[body] = Isometry3::from_parts(Translation3::from(translation_m), rotation);
    }
    cell_from_body
}

/// Rapier's world: the sets and solvers one simulation needs, stepped together.
struct Simulation {
    parameters: IntegrationParameters,
    pipeline: PhysicsPipeline,
    islands: IslandManager,
    broad_phase: DefaultBroadPhase,
    narrow_phase: NarrowPhase,
    rigid_bodies: RigidBodySet,
    colliders: ColliderSet,
    impulse_joints: ImpulseJointSet,
    multibody_joints: MultibodyJointSet,
    ccd_solver: CCDSolver,
}

impl Simulation {
    fn new(rigid_bodies: RigidBodySet, colliders: ColliderSet) -> Self {
        let mut parameters = IntegrationParameters {
            dt: STEP_S,
            length_unit: LENGTH_UNIT_M,
            num_solver_iterations: SOLVER_ITERATIONS,
            ..IntegrationParameters::default()
        };
        parameters.contact_softness.natural_frequency = CONTACT_STIFFNESS_HZ;
        Self {
            parameters,
            pipeline: PhysicsPipeline::new(),
            islands: IslandManager::new(),
            broad_phase: DefaultBroadPhase::new(),
            narrow_phase: NarrowPhase::new(),
            rigid_bodies,
            colliders,
            impulse_joints: ImpulseJointSet::new(),
            multibody_joints: MultibodyJointSet::new(),
            ccd_solver: CCDSolver::new(),
        }
    }

    fn step(&mut self, gravity_m_s2: &Vector3<f64>) {
        self.pipeline.step(
            gravity_m_s2,
            &self.parameters,
            &mut self.islands,
            &mut self.broad_phase,
            &mut self.narrow_phase,
            &mut self.rigid_bodies,
            &mut self.colliders,
            &mut self.impulse_joints,
            &mut self.multibody_joints,
            &mut self.ccd_solver,
            &(),
            &(),
        );
    }

    fn poses(&self, handles: &[RigidBodyHandle]) -> Vec<Isometry3<f64>> {
        handles
            .iter()
            .map(|&h| *self.rigid_bodies[h].position())
            .collect()
    }
}

/// Drops `bodies` into the bin made of `slabs` (plus the cell floor) and steps until the pile
/// is at rest or `settings.max_steps` ran out, then pushes apart what still interpenetrates
/// (see `DEPENETRATION_STEPS`). Returns each body frame's final pose in the cell frame, `None`
/// for bodies that ended outside the bin (unless `settings.keep_outside`). `rng` draws the
/// start orientations, positions and drop order only, so a seeded `rng` gives identical piles.
pub fn settle_pile(
    slabs: &[StaticSlab],
    bodies: &[BodyShape],
    settings: &PileSettings,
    rng: &mut impl Rng,
) -> Result<Settled, PileError> {
    settings.validate()?;
    for (index, slab) in slabs.iter().enumerate() {
        if slab
            .half_extents_m
            .iter()
            .any(|h| !(h.is_finite() && *h > 0.0))
        {
            return Err(PileError::InvalidSlab {
                index,
                problem: "a half extent is not a positive finite number".to_owned(),
                fix: "give half extents in metres, all > 0".to_owned(),
            });
        }
    }
    let shapes = bodies
        .iter()
        .enumerate()
        .map(|(index, body)| body.collider_in_body(index))
        .collect::<Result<Vec<_>, _>>()?;
    if bodies.is_empty() {
        return Ok(Settled {
            cell_from_body: Vec::new(),
            steps: 0,
            at_rest: true,
        });
    }

    let mut colliders = ColliderSet::new();
    let statics = std::iter::once(ColliderBuilder::halfspace(Vector3::z_axis())).chain(
        slabs.iter().map(|slab| {
            let [hx_m, hy_m, hz_m] = slab.half_extents_m;
            ColliderBuilder::cuboid(hx_m, hy_m, hz_m).position(slab.cell_from_slab)
        }),
    );
    for collider in statics {
        colliders.insert(
            collider
                .friction(settings.friction)
                .restitution(settings.restitution),
        );
    }
    let mut rigid_bodies = RigidBodySet::new();
    let handles: Vec<RigidBodyHandle> = start_poses(bodies, settings, rng)
        .into_iter()
        .zip(shapes)
        .map(|(cell_from_body, (shape, body_from_collider))| {
            let handle = rigid_bodies.insert(
                RigidBodyBuilder::dynamic()
                    .pose(cell_from_body)
                    .linear_damping(LINEAR_DAMPING_PER_S)
                    .angular_damping(ANGULAR_DAMPING_PER_S),
            );
            let activation = rigid_bodies[handle].activation_mut();
            activation.normalized_linear_threshold = SLEEP_LINEAR_SPEED_M_S / LENGTH_UNIT_M;
            activation.angular_threshold = SLEEP_ANGULAR_SPEED_RAD_S;
            activation.time_until_sleep = TIME_UNTIL_SLEEP_S;
            colliders.insert_with_parent(
                ColliderBuilder::new(shape)
                    .position(body_from_collider)
                    .density(settings.density_kg_m3)
                    .friction(settings.friction)
                    .restitution(settings.restitution),
                handle,
                &mut rigid_bodies,
            );
            handle
        })
        .collect();
    let mut simulation = Simulation::new(rigid_bodies, colliders);

    let gravity_m_s2 = Vector3::new(0.0, 0.0, -GRAVITY_M_S2);
    let mut steps = 0;
    let mut at_rest = false;
    let mut window_start = simulation.poses(&handles);
    while steps < settings.max_steps && !at_rest {
        simulation.step(&gravity_m_s2);
        steps += 1;
        for &h in &handles {
            let body = &mut simulation.rigid_bodies[h];
            let speed_m_s = body.linvel().norm();
            if speed_m_s > MAX_SPEED_M_S {
                let capped_m_s = body.linvel() * (MAX_SPEED_M_S / speed_m_s);
                body.set_linvel(capped_m_s, false);
            }
        }
        at_rest = handles
            .iter()
            .all(|&h| simulation.rigid_bodies[h].is_sleeping());
        if !at_rest && steps % QUIET_WINDOW_STEPS == 0 {
            let now = simulation.poses(&handles);
            at_rest = window_start.iter().zip(&now).all(|(before, after)| {
                let moved = before.inverse() * after;
                moved.translation.vector.norm() <= QUIET_TRANSLATION_M
                    && moved.rotation.angle() <= QUIET_ROTATION_RAD
            });
            window_start = now;
        }
    }

    for _ in 0..DEPENETRATION_STEPS {
        for &h in &handles {
            let body = &mut simulation.rigid_bodies[h];
            // Sleeping bodies keep stale contacts: wake them so contacts are recomputed.
            body.wake_up(true);
            body.set_linvel(Vector3::zeros(), false);
            body.set_angvel(Vector3::zeros(), false);
        }
        simulation.step(&Vector3::zeros());
    }

    let half_inner_m = settings.bin_inner_size_m.map(|s| s / 2.0);
    let cell_from_body = handles
        .iter()
        .map(|&h| {
            let body = &simulation.rigid_bodies[h];
            let com_in_cell_m = body.center_of_mass();
            let inside = com_in_cell_m.x.abs() <= half_inner_m[0]
                && com_in_cell_m.y.abs() <= half_inner_m[1]
                && com_in_cell_m.z >= settings.bin_floor_z_m;
            (inside || settings.keep_outside).then(|| *body.position())
        })
        .collect();
    Ok(Settled {
        cell_from_body,
        steps,
        at_rest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use parry3d_f64::query::contact;
    use parry3d_f64::shape::HalfSpace;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const INNER_M: [f64; 2] = [0.40, 0.30];
    const WALL_HEIGHT_M: f64 = 0.15;
    const THICKNESS_M: f64 = 0.01;

    /// A bin like the scene generator's: a floor slab on z = 0 and four walls around the
    /// inner footprint.
    fn bin() -> Vec<StaticSlab> {
        let t = THICKNESS_M / 2.0;
        let [hx, hy] = INNER_M.map(|s| s / 2.0);
        let wall_hz = WALL_HEIGHT_M / 2.0;
        let wall_z = THICKNESS_M + wall_hz;
        let slab = |half_extents_m: [f64; 3], x: f64, y: f64, z: f64| StaticSlab {
            half_extents_m,
            cell_from_slab: Isometry3::translation(x, y, z),
        };
        vec![
            slab([hx + 2.0 * t, hy + 2.0 * t, t], 0.0, 0.0, t),
            slab([t, hy + 2.0 * t, wall_hz], hx + t, 0.0, wall_z),
            slab([t, hy + 2.0 * t, wall_hz], -hx - t, 0.0, wall_z),
            slab([hx, t, wall_hz], 0.0, hy + t, wall_z),
            slab([hx, t, wall_hz], 0.0, -hy - t, wall_z),
        ]
    }

    fn settings() -> PileSettings {
        PileSettings::for_bin(INNER_M, THICKNESS_M)
    }

    /// Cuboids, cylinders and convex hulls of random points, 1 to 8 cm.
    fn mixed_bodies(count: usize, rng: &mut StdRng) -> Vec<BodyShape> {
        (0..count)
            .map(|i| match i % 3 {
                0 => BodyShape::Cuboid {
                    half_extents_m: [
                        rng.gen_range(0.005..0.04),
                        rng.gen_range(0.005..0.03),
                        rng.gen_range(0.005..0.02),
                    ],
                },
                1 => BodyShape::Cylinder {
                    radius_m: rng.gen_range(0.008..0.03),
                    half_height_m: rng.gen_range(0.005..0.04),
                },
                _ => BodyShape::ConvexHull {
                    // Off-centre on purpose: the body frame is not the centre of mass.
                    points_m: (0..12)
                        .map(|_| {
                            Point3::new(
                                rng.gen_range(-0.03..0.03),
                                rng.gen_range(-0.025..0.025),
                                rng.gen_range(-0.01..0.03),
                            )
                        })
                        .collect(),
                },
            })
            .collect()
    }

    /// The body's real surface (a true cylinder, not the simulated prism) and its pose in
    /// the body frame.
    fn true_shape(body: &BodyShape) -> (SharedShape, Isometry3<f64>) {
        match body {
            BodyShape::Cylinder {
                radius_m,
                half_height_m,
            } => (
                SharedShape::cylinder(*half_height_m, *radius_m),
                // parry's cylinder axis is y: turn it onto z.
                Isometry3::rotation(Vector3::x() * std::f64::consts::FRAC_PI_2),
            ),
            _ => body.collider_in_body(0).expect("valid body"),
        }
    }

    /// Deepest interpenetration among the kept bodies, the slabs and the cell floor, measured
    /// by parry on the final poses with the bodies' real surfaces.
    fn max_penetration_m(slabs: &[StaticSlab], bodies: &[BodyShape], settled: &Settled) -> f64 {
        let placed: Vec<(Isometry3<f64>, SharedShape)> = bodies
            .iter()
            .zip(&settled.cell_from_body)
            .filter_map(|(body, pose)| {
                let (shape, body_from_shape) = true_shape(body);
                pose.map(|cell_from_body| (cell_from_body * body_from_shape, shape))
            })
            .collect();
        let statics: Vec<(Isometry3<f64>, SharedShape)> = slabs
            .iter()
            .map(|s| {
                let [x, y, z] = s.half_extents_m;
                (s.cell_from_slab, SharedShape::cuboid(x, y, z))
            })
            .chain(std::iter::once((
                Isometry3::identity(),
                SharedShape::new(HalfSpace::new(Vector3::z_axis())),
            )))
            .collect();
        // The static goes first: parry 0.25 misreads the depth when a half-space is the second
        // shape (a cube 5 mm into one reads 15 mm).
        let depth_m = |a: &(Isometry3<f64>, SharedShape), b: &(Isometry3<f64>, SharedShape)| {
            contact(&b.0, &*b.1, &a.0, &*a.1, 0.0)
                .expect("supported shape pair")
                .map_or(0.0, |c| (-c.dist).max(0.0))
        };
        let mut worst_m: f64 = 0.0;
        for (i, a) in placed.iter().enumerate() {
            for b in placed[i + 1..].iter().chain(&statics) {
                worst_m = worst_m.max(depth_m(a, b));
            }
        }
        worst_m
    }

    #[test]
    fn mixed_piles_do_not_interpenetrate() {
        let slabs = bin();
        // Keep outside bodies too: they are checked against the outside of the bin as well.
        let settings = PileSettings {
            keep_outside: true,
            ..settings()
        };
        let mut worst_m: f64 = 0.0;
        for seed in 0..20 {
            let mut rng = StdRng::seed_from_u64(seed);
            let bodies = mixed_bodies(25, &mut rng);
            let settled = settle_pile(&slabs, &bodies, &settings, &mut rng).expect("settles");
            let depth_m = max_penetration_m(&slabs, &bodies, &settled);
            eprintln!(
                "seed {seed}: {} steps, at rest {}, max penetration {:.3} mm",
                settled.steps,
                settled.at_rest,
                depth_m * 1e3
            );
            worst_m = worst_m.max(depth_m);
            // Nothing tunnelled into or through the bin floor.
            for (body, pose) in bodies.iter().zip(&settled.cell_from_body) {
                let (shape, body_from_shape) = true_shape(body);
                let com_m =
                    pose.expect("kept") * body_from_shape * shape.mass_properties(1.0).local_com;
                let over_floor =
                    com_m.x.abs() < INNER_M[0] / 2.0 && com_m.y.abs() < INNER_M[1] / 2.0;
                assert!(
                    !over_floor || com_m.z > THICKNESS_M,
                    "seed {seed}: body at {com_m}"
                );
            }
        }
        eprintln!("worst penetration over 20 piles: {:.3} mm", worst_m * 1e3);
        assert!(worst_m <= 1e-3, "worst penetration {worst_m} m");
    }

    #[test]
    fn same_seed_gives_identical_poses() {
        let run = || {
            let mut rng = StdRng::seed_from_u64(7);
            let bodies = mixed_bodies(15, &mut rng);
            settle_pile(&bin(), &bodies, &settings(), &mut rng).expect("settles")
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn a_small_pile_comes_to_rest_inside_the_bin() {
        let mut rng = StdRng::seed_from_u64(3);
        let bodies = mixed_bodies(10, &mut rng);
        let settled = settle_pile(&bin(), &bodies, &settings(), &mut rng).expect("settles");
        assert!(settled.at_rest, "{} steps", settled.steps);
        assert!(settled.cell_from_body.iter().all(Option::is_some));
        for pose in settled.cell_from_body.iter().flatten() {
            let t = pose.translation.vector;
            assert!(t.z > THICKNESS_M && t.z < WALL_HEIGHT_M, "{t}");
        }
    }

    /// Bodies dropped over a strip wider than the bin, with no walls, slide or fall off the
    /// floor slab: they are removed, or kept on the cell floor if asked.
    #[test]
    fn outside_bodies_are_removed_unless_kept() {
        let floor_only = &bin()[..1];
        let bodies: Vec<BodyShape> = (0..12)
            .map(|_| BodyShape::Cuboid {
                half_extents_m: [0.03, 0.03, 0.03],
            })
            .collect();
        let mut settings = settings();
        settings.drop_region_m = ([-0.5, 0.5], [-0.05, 0.05]);
        let settled = settle_pile(
            floor_only,
            &bodies,
            &settings,
            &mut StdRng::seed_from_u64(1),
        )
        .expect("settles");
        let kept = settled.cell_from_body.iter().flatten().count();
        assert!(kept > 0 && kept < bodies.len(), "kept {kept}");
        for pose in settled.cell_from_body.iter().flatten() {
            assert!(pose.translation.x.abs() <= INNER_M[0] / 2.0);
        }

        settings.keep_outside = true;
        let kept_all = settle_pile(
            floor_only,
            &bodies,
            &settings,
            &mut StdRng::seed_from_u64(1),
        )
        .expect("settles");
        assert!(kept_all.cell_from_body.iter().all(Option::is_some));
        let on_cell_floor = kept_all
            .cell_from_body
            .iter()
            .flatten()
            .filter(|p| p.translation.x.abs() > INNER_M[0] / 2.0 + THICKNESS_M)
            .count();
        assert!(on_cell_floor > 0);
        for pose in kept_all.cell_from_body.iter().flatten() {
            assert!(pose.translation.z > 0.0);
        }
    }

    /// Timing, not a check: `cargo test --release -- --ignored --nocapture pile_timing`.
    #[test]
    #[ignore]
    fn pile_timing() {
        let slabs = bin();
        for count in [5, 15, 30] {
            let piles = 20;
            let mut steps = 0;
            let start = std::time::Instant::now();
            for seed in 0..piles {
                let mut rng = StdRng::seed_from_u64(seed);
                let bodies = mixed_bodies(count, &mut rng);
                steps += settle_pile(&slabs, &bodies, &settings(), &mut rng)
                    .expect("settles")
                    .steps;
            }
            let ms_per_pile = start.elapsed().as_secs_f64() * 1e3 / piles as f64;
            eprintln!(
                "{count} bodies: {ms_per_pile:.1} ms per pile, {} steps per pile",
                steps / piles as usize
            );
        }
    }

    #[test]
    fn empty_pile_is_empty() {
        let settled =
            settle_pile(&bin(), &[], &settings(), &mut StdRng::seed_from_u64(0)).expect("empty");
        assert!(settled.cell_from_body.is_empty());
        assert!(settled.at_rest);
    }

    #[test]
    fn flat_or_short_hulls_are_refused() {
        let point = |x: f64, y: f64, z: f64| Point3::new(x, y, z);
        let flat = vec![
            point(0.0, 0.0, 0.0),
            point(0.02, 0.0, 0.0),
            point(0.0, 0.02, 0.0),
            point(0.02, 0.02, 0.0),
        ];
        let three = vec![
            point(0.0, 0.0, 0.0),
            point(0.02, 0.0, 0.0),
            point(0.0, 0.02, 0.01),
        ];
        let on_a_line = (0..6).map(|i| point(0.01 * i as f64, 0.0, 0.0)).collect();
        let not_finite = vec![
            point(0.0, 0.0, 0.0),
            point(0.02, 0.0, 0.0),
            point(0.0, 0.02, 0.0),
            point(0.0, 0.0, f64::NAN),
        ];
        let cube = BodyShape::Cuboid {
            half_extents_m: [0.01; 3],
        };
        for points_m in [flat, three, on_a_line, not_finite, Vec::new()] {
            let bad = BodyShape::ConvexHull { points_m };
            let result = settle_pile(
                &bin(),
                &[cube.clone(), bad],
                &settings(),
                &mut StdRng::seed_from_u64(0),
            );
            assert!(
                matches!(result, Err(PileError::InvalidBody { index: 1, .. })),
                "{result:?}"
            );
        }
    }

    #[test]
    fn bad_settings_and_sizes_are_refused() {
        let one_cube = [BodyShape::Cuboid {
            half_extents_m: [0.01; 3],
        }];
        let mut rng = StdRng::seed_from_u64(0);
        let refused = |settings: PileSettings, rng: &mut StdRng| {
            matches!(
                settle_pile(&bin(), &one_cube, &settings, rng),
                Err(PileError::InvalidSettings { .. })
            )
        };
        assert!(refused(
            PileSettings {
                restitution: 1.5,
                ..settings()
            },
            &mut rng
        ));
        assert!(refused(
            PileSettings {
                friction: -0.1,
                ..settings()
            },
            &mut rng
        ));
        assert!(refused(
            PileSettings {
                density_kg_m3: 0.0,
                ..settings()
            },
            &mut rng
        ));
        assert!(refused(
            PileSettings {
                bin_inner_size_m: [0.0, 0.3],
                ..settings()
            },
            &mut rng
        ));
        assert!(refused(
            PileSettings {
                drop_region_m: ([0.1, -0.1], [-0.1, 0.1]),
                ..settings()
            },
            &mut rng
        ));
        assert!(refused(
            PileSettings {
                bin_floor_z_m: f64::NAN,
                ..settings()
            },
            &mut rng
        ));

        let zero_radius = BodyShape::Cylinder {
            radius_m: 0.0,
            half_height_m: 0.01,
        };
        assert!(matches!(
            settle_pile(&bin(), &[zero_radius], &settings(), &mut rng),
            Err(PileError::InvalidBody { index: 0, .. })
        ));
        let bad_slab = StaticSlab {
            half_extents_m: [0.1, -0.1, 0.1],
            cell_from_slab: Isometry3::identity(),
        };
        assert!(matches!(
            settle_pile(&[bad_slab], &one_cube, &settings(), &mut rng),
            Err(PileError::InvalidSlab { index: 0, .. })
        ));
    }

    /// The prism that stands in for a cylinder contains it and hugs it.
    #[test]
    fn cylinder_prism_contains_the_cylinder_along_body_z() {
        let (radius_m, half_height_m) = (0.02, 0.05);
        let (shape, body_from_collider) = BodyShape::Cylinder {
            radius_m,
            half_height_m,
        }
        .collider_in_body(0)
        .expect("valid");
        let aabb = shape.compute_aabb(&body_from_collider);
        assert!((aabb.maxs.z - half_height_m).abs() < 1e-12);
        assert!((aabb.maxs.x - radius_m).abs() < 1e-12 && (aabb.maxs.y - radius_m).abs() < 1e-12);
        let gap_m = radius_m * (1.0 / (std::f64::consts::PI / CYLINDER_SIDES as f64).cos() - 1.0);
        for k in 0..100 {
            let angle_rad = k as f64 * 0.0628;
            let rim = Point3::new(radius_m * angle_rad.cos(), radius_m * angle_rad.sin(), 0.0);
            let projection = shape.project_point(&body_from_collider, &rim, false);
            assert!(projection.is_inside || (projection.point - rim).norm() < 1e-12);
            let outside = rim + (rim.coords.normalize() * (gap_m + 1e-6));
            assert!(!shape.contains_point(&body_from_collider, &outside));
        }
    }

    #[test]
    fn uniform_rotations_have_no_preferred_axis() {
        let mut rng = StdRng::seed_from_u64(5);
        let n = 20_000;
        let mean_z: Vector3<f64> = (0..n)
            .map(|_| uniform_rotation(&mut rng) * Vector3::z())
            .sum::<Vector3<f64>>()
            / n as f64;
        // The mean of n uniform unit vectors has an rms length of 1/sqrt(n).
        assert!(mean_z.norm() < 4.0 / (n as f64).sqrt(), "{mean_z}");
    }
}
