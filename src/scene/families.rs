//! Procedural shape families for domain randomisation: seeded generators of closed,
//! outward-oriented triangle meshes, each family holding many different shapes (the spirit of
//! the Dex-Net and SD Mask R-CNN object sets, plus the brackets, plates, tubes and cups met in
//! real bin picking). Networks trained on the three analytic primitives alone fail on real
//! parts; these meshes widen what the generator draws.
//!
//! Every mesh leaves [`procedural_mesh`] closed (each undirected edge shared by exactly two
//! triangles, in opposite directions), outward oriented, with its largest axis-aligned extent
//! equal to a size drawn from `size_m` and its centre of mass (volume centroid) at the origin.
//! Each stays under 3000 triangles because the renderer ray-casts every one of them.
//!
//! Builders work unit-free and [`procedural_mesh`] scales the result, except for plates and
//! shells: their 2-8 mm thickness and 2-5 mm walls are physical, so those builders work in
//! metres at the drawn size and the final scale factor stays within a few per cent of one.

use std::collections::BTreeMap;
use std::f64::consts::{FRAC_PI_2, PI, TAU};

use nalgebra::{Point2, Point3, Vector2, Vector3};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::mesh::TriangleMesh;

/// A family of object shapes the generator can draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShapeFamily {
    /// Analytic cuboid (ray-cast exactly elsewhere; a 12-triangle stand-in here).
    Box,
    /// Analytic cylinder (a 32-sided stand-in here).
    Cylinder,
    /// Analytic triangular prism (an exact 8-triangle stand-in here).
    Prism,
    /// Convex hull of 8-40 random points in an anisotropic ellipsoid.
    ConvexHull,
    /// Superquadric with shape exponents from boxy (0.2) to pinched (2.5) and three radii.
    Superquadric,
    /// A 2-D outline (L, T, U, plus, star, random simple polygon) extruded to a depth.
    Extrusion,
    /// Parts joined together: brackets of boxes, dumbbells, mushrooms and bolts.
    Union,
    /// Torus with an elliptical section, or a tube (round, square or hexagonal outside).
    Ring,
    /// Thin plate 2-8 mm thick: rounded rectangle, disc, polygon, washer, plate with a hole.
    Plate,
    /// Thin-walled solid with a 2-5 mm wall: cup, bowl, half-pipe channel.
    Shell,
    /// Icosphere displaced by smooth random waves and stretched.
    Blob,
    /// Shapes read from users' mesh files; not generated here.
    Mesh,
}

impl ShapeFamily {
    pub const ALL: [ShapeFamily; 12] = [
        ShapeFamily::Box,
        ShapeFamily::Cylinder,
        ShapeFamily::Prism,
        ShapeFamily::ConvexHull,
        ShapeFamily::Superquadric,
        ShapeFamily::Extrusion,
        ShapeFamily::Union,
        ShapeFamily::Ring,
        ShapeFamily::Plate,
        ShapeFamily::Shell,
        ShapeFamily::Blob,
        ShapeFamily::Mesh,
    ];

    /// The serde (configuration file) name.
    pub fn name(self) -> &'static str {
        match self {
            ShapeFamily::Box => "box",
            ShapeFamily::Cylinder => "cylinder",
            ShapeFamily::Prism => "prism",
            ShapeFamily::ConvexHull => "convex_hull",
            ShapeFamily::Superquadric => "superquadric",
            ShapeFamily::Extrusion => "extrusion",
            ShapeFamily::Union => "union",
            ShapeFamily::Ring => "ring",
            ShapeFamily::Plate => "plate",
            ShapeFamily::Shell => "shell",
            ShapeFamily::Blob => "blob",
            ShapeFamily::Mesh => "mesh",
        }
    }

    /// Whether the family's shapes are generated as meshes here: false for the analytic
    /// primitives (box, cylinder, prism) and for shapes read from mesh files.
    pub fn is_procedural(self) -> bool {
        !matches!(
            self,
            ShapeFamily::Box | ShapeFamily::Cylinder | ShapeFamily::Prism | ShapeFamily::Mesh
        )
    }
}

/// Why [`procedural_mesh`] made no mesh.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FamilyError {
    #[error("shape family `mesh` reads its shapes from files; load them with the mesh readers, not procedural_mesh")]
    FromFiles,
    #[error("size_m {size_m:?} must be finite with 0 < low <= high (metres); fix the objects' size_m range")]
    Size { size_m: [f64; 2] },
}

/// A closed, outward-oriented mesh of `family` whose largest axis-aligned extent is drawn
/// uniformly from `size_m` = [low, high] (metres), centred at its centre of mass (volume
/// centroid, within 1e-6 m of the origin).
///
/// The analytic families get mesh stand-ins drawn the way the world draws them (every
/// dimension from `size_m`), useful to render or test them through the mesh path; `Mesh`
/// returns [`FamilyError::FromFiles`]. A union is returned as its closed, outward parts
/// overlapping or touching: the ray caster keeps the nearest hit so inner faces never show,
/// and its parts touch along faces or sit mirror-symmetric, so the volume centroid of the
/// parts is the centre of mass of the union.
pub fn procedural_mesh(
    family: ShapeFamily,
    size_m: [f64; 2],
    rng: &mut impl Rng,
) -> Result<TriangleMesh, FamilyError> {
    let [low_m, high_m] = size_m;
    let valid = low_m.is_finite() && high_m.is_finite() && low_m > 0.0 && low_m <= high_m;
    if !valid {
        return Err(FamilyError::Size { size_m });
    }
    let extent_m = rng.gen_range(low_m..=high_m);
    let mesh = match family {
        ShapeFamily::Box => box_stand_in(size_m, rng),
        ShapeFamily::Cylinder => cylinder_stand_in(size_m, rng),
        ShapeFamily::Prism => prism_stand_in(size_m, rng),
        ShapeFamily::Mesh => return Err(FamilyError::FromFiles),
        ShapeFamily::ConvexHull => scaled_to_extent(random_convex_hull(rng), extent_m),
        ShapeFamily::Superquadric => scaled_to_extent(superquadric(rng), extent_m),
        ShapeFamily::Extrusion => scaled_to_extent(extrusion(rng), extent_m),
        ShapeFamily::Union => scaled_to_extent(union_of_parts(rng), extent_m),
        ShapeFamily::Ring => scaled_to_extent(ring(rng), extent_m),
        ShapeFamily::Plate => scaled_to_extent(plate(extent_m, rng), extent_m),
        ShapeFamily::Shell => scaled_to_extent(shell(extent_m, rng), extent_m),
        ShapeFamily::Blob => scaled_to_extent(blob(rng), extent_m),
    };
    Ok(centred(mesh))
}

// ---------------------------------------------------------------------------------------
// Families. Unit-free unless a parameter says `_m`.

/// Cuboid with every side drawn from `size_m`, as the world draws its boxes.
fn box_stand_in(size_m: [f64; 2], rng: &mut impl Rng) -> TriangleMesh {
    let mut side_m = || rng.gen_range(size_m[0]..=size_m[1]);
    let (x_m, y_m, z_m) = (side_m(), side_m(), side_m());
    cuboid(Point3::origin(), Point3::new(x_m, y_m, z_m))
}

/// Cylinder along z, diameter and height drawn from `size_m`, as the world draws them.
fn cylinder_stand_in(size_m: [f64; 2], rng: &mut impl Rng) -> TriangleMesh {
    let mut side_m = || rng.gen_range(size_m[0]..=size_m[1]);
    let (diameter_m, height_m) = (side_m(), side_m());
    cylinder_z(diameter_m / 2.0, 0.0, height_m, ROUND_SEGMENTS)
}

/// The world's prism: isosceles triangle in the x-z plane, base at the bottom, extruded
/// along y; base and length from `size_m`, height 0.8 of a draw (as in the world).
fn prism_stand_in(size_m: [f64; 2], rng: &mut impl Rng) -> TriangleMesh {
    let mut side_m = || rng.gen_range(size_m[0]..=size_m[1]);
    let (base_m, height_m, length_m) = (side_m(), side_m() * 0.8, side_m());
    let triangle = [
        Point2::new(-base_m / 2.0, 0.0),
        Point2::new(base_m / 2.0, 0.0),
        Point2::new(0.0, height_m),
    ];
    mapped(prism(&triangle, length_m), |p| Point3::new(p.x, p.z, p.y))
}

/// Convex hull of 8-40 points uniform in an ellipsoid with semi-axes 1 and two in [0.3, 1].
fn random_convex_hull(rng: &mut impl Rng) -> TriangleMesh {
    let radii = Vector3::new(1.0, rng.gen_range(0.3..1.0), rng.gen_range(0.3..1.0));
    let count = rng.gen_range(8..=40);
    // Quickhull can fail on near-degenerate draws (all points almost coplanar); a fresh draw
    // of the same ellipsoid fixes that in practice, the octahedron only guarantees an answer.
    for _ in 0..HULL_ATTEMPTS {
        let points: Vec<Point3<f64>> = (0..count)
            .map(|_| Point3::from(in_unit_ball(rng).component_mul(&radii)))
            .collect();
        if let Ok((vertices_m, triangles)) = parry3d_f64::transformation::try_convex_hull(&points) {
            let mut mesh = TriangleMesh {
                vertices_m,
                triangles,
            };
            orient_outward(&mut mesh);
            if is_closed(&mesh) && signed_volume(&mesh) > 1e-6 {
                return mesh;
            }
        }
    }
    octahedron(radii)
}

/// Superquadric (|x/a|^(2/e2) + |y/b|^(2/e2))^(e2/e1) + |z/c|^(2/e1) = 1 on a latitude and
/// longitude grid; e1, e2 in [0.2, 2.5] span boxy (small) to pinched (above 2).
fn superquadric(rng: &mut impl Rng) -> TriangleMesh {
    let e1 = rng.gen_range(0.2..2.5);
    let e2 = rng.gen_range(0.2..2.5);
    let radii = Vector3::new(1.0, rng.gen_range(0.3..1.0), rng.gen_range(0.3..1.2));
    // Signed power keeps the octant: the parametrisation maps the sphere's angles onto the
    // surface monotonically, so the grid never folds.
    // cos(PI / 2) is 6e-17, not 0, and its 0.2th power is 6e-4: snap it so the poles and the
    // longitude extremes sit exactly on the axes.
    let signed_pow = |value: f64, exponent: f64| {
        if value.abs() < 1e-12 {
            0.0
        } else {
            value.signum() * value.abs().powf(exponent)
        }
    };
    let point = |latitude: f64, longitude: f64| {
        let ring = signed_pow(latitude.cos(), e1);
        Point3::new(
            radii.x * ring * signed_pow(longitude.cos(), e2),
            radii.y * ring * signed_pow(longitude.sin(), e2),
            radii.z * signed_pow(latitude.sin(), e1),
        )
    };
    let latitudes: Vec<f64> = (1..SUPERQUADRIC_LATITUDES)
        .map(|i| -FRAC_PI_2 + PI * i as f64 / SUPERQUADRIC_LATITUDES as f64)
        .collect();
    uv_sphere_like(&latitudes, SUPERQUADRIC_LONGITUDES, point)
}

/// A 2-D outline extruded along z to a depth between 0.12 and 1.2 of its largest extent:
/// plates through profile bars.
fn extrusion(rng: &mut impl Rng) -> TriangleMesh {
    let outline = match rng.gen_range(0..6) {
        0 => l_outline(rng),
        1 => t_outline(rng),
        2 => u_outline(rng),
        3 => plus_outline(rng),
        4 => star_outline(rng.gen_range(5..=8), rng.gen_range(0.35..0.75), 1.0),
        _ => random_star_shaped_outline(rng),
    };
    let span = outline_span(&outline);
    prism(&outline, span * rng.gen_range(0.12..1.2))
}

/// Parts joined together: box brackets (L, U, Z, T), dumbbells, mushrooms and bolts.
fn union_of_parts(rng: &mut impl Rng) -> TriangleMesh {
    match rng.gen_range(0..4) {
        0 => bracket(rng),
        1 => dumbbell(rng),
        _ => mushroom(rng),
    }
}

/// Torus with an elliptical section, or a tube whose outside is round, square or hexagonal
/// (nuts, spacers, square tube) and whose bore is round or matches the outside.
fn ring(rng: &mut impl Rng) -> TriangleMesh {
    if rng.gen_bool(0.4) {
        let minor = rng.gen_range(0.15..0.6);
        let section_aspect = rng.gen_range(0.5..1.6);
        let profile_rz: Vec<[f64; 2]> = (0..TORUS_SECTION_POINTS)
            .map(|i| {
                let angle = TAU * i as f64 / TORUS_SECTION_POINTS as f64;
                [
                    1.0 + minor * angle.cos(),
                    minor * section_aspect * angle.sin(),
                ]
            })
            .collect();
        lathe(&profile_rz, ROUND_SEGMENTS)
    } else {
        let outer_sides = [0, 0, 4, 6][rng.gen_range(0..4)];
        let inner_sides = if rng.gen_bool(0.3) { outer_sides } else { 0 };
        // The bore's circumradius stays below the outside's inradius, so walls never cross.
        let bore = rng.gen_range(0.35..0.85) * inradius_factor(outer_sides);
        let height = rng.gen_range(0.2..2.5);
        let (outer, inner) = tube_outlines(outer_sides, inner_sides, 1.0, bore);
        holed_prism(&outer, &inner, height)
    }
}

/// Thin plate, 2-8 mm thick, largest planar extent `extent_m`: rounded rectangle, disc,
/// regular polygon, washer, or rounded rectangle with a round hole.
fn plate(extent_m: f64, rng: &mut impl Rng) -> TriangleMesh {
    let thickness_m: f64 = rng.gen_range(0.002..=0.008);
    match rng.gen_range(0..5) {
        0 => {
            let depth_m = extent_m * rng.gen_range(0.3..1.0);
            let corner_m = depth_m * rng.gen_range(0.03..0.5);
            let outline = rounded_rectangle(extent_m, depth_m, corner_m);
            prism(&outline, thickness_m.min(depth_m / 4.0))
        }
        1 => prism(
            &circle(extent_m / 2.0, PLATE_SEGMENTS),
            thickness_m.min(extent_m / 4.0),
        ),
        2 => {
            let sides = rng.gen_range(3..=8);
            let outline = circle(extent_m / 2.0, sides);
            prism(&outline, thickness_m.min(extent_m / 4.0))
        }
        3 => {
            let radius_m = extent_m / 2.0;
            let hole_m = radius_m * rng.gen_range(0.3..0.75);
            let outer = circle(radius_m, PLATE_SEGMENTS);
            let inner = circle(hole_m, PLATE_SEGMENTS);
            holed_prism(&outer, &inner, thickness_m.min(extent_m / 4.0))
        }
        _ => {
            let depth_m = extent_m * rng.gen_range(0.4..1.0);
            let corner_m = depth_m * rng.gen_range(0.03..0.5);
            let outer = rounded_rectangle(extent_m, depth_m, corner_m);
            let hole_m = depth_m / 2.0 * rng.gen_range(0.2..0.6);
            // The hole's points sit at the outside's polar angles, so each wedge between two
            // neighbouring angles is one convex quad of the holed cap.
            let inner: Vec<Point2<f64>> = outer
                .iter()
                .map(|p| {
                    let angle = p.y.atan2(p.x);
                    Point2::new(hole_m * angle.cos(), hole_m * angle.sin())
                })
                .collect();
            holed_prism(&outer, &inner, thickness_m.min(depth_m / 4.0))
        }
    }
}

/// Thin-walled solid, wall 2-5 mm, largest extent about `extent_m`: a cup (straight or
/// flared wall), a bowl (elliptic section, shallow dish to hemisphere), or a half-pipe
/// channel (arc 180-250 degrees).
fn shell(extent_m: f64, rng: &mut impl Rng) -> TriangleMesh {
    let wall_m: f64 = rng.gen_range(0.002..=0.005);
    match rng.gen_range(0..3) {
        0 => {
            let height_over_width = rng.gen_range(0.4..1.6);
            let (rim_radius_m, height_m) = if height_over_width > 1.0 {
                (extent_m / height_over_width / 2.0, extent_m)
            } else {
                (extent_m / 2.0, extent_m * height_over_width)
            };
            let base_radius_m = rim_radius_m * rng.gen_range(0.6..=1.0);
            let wall_m = wall_m.min(base_radius_m / 4.0).min(height_m / 4.0);
            // Horizontal offset that gives the slanted wall its thickness measured normal
            // to the wall.
            let slant = ((rim_radius_m - base_radius_m) / height_m).atan();
            let offset_m = wall_m / slant.cos();
            let profile_rz = [
                [0.0, 0.0],
                [base_radius_m, 0.0],
                [rim_radius_m, height_m],
                [rim_radius_m - offset_m, height_m],
                [base_radius_m - offset_m + (wall_m * slant.tan()), wall_m],
                [0.0, wall_m],
            ];
            lathe(&profile_rz, ROUND_SEGMENTS)
        }
        1 => {
            let radius_m = extent_m / 2.0;
            let depth_m = radius_m * rng.gen_range(0.3..=1.0);
            let wall_m = wall_m.min(depth_m / 3.0);
            let outer = (0..=BOWL_ARC_POINTS).map(|i| {
                let angle = FRAC_PI_2 * i as f64 / BOWL_ARC_POINTS as f64;
                [radius_m * angle.sin(), depth_m * (1.0 - angle.cos())]
            });
            let inner = (0..=BOWL_ARC_POINTS).rev().map(|i| {
                let angle = FRAC_PI_2 * i as f64 / BOWL_ARC_POINTS as f64;
                [
                    (radius_m - wall_m) * angle.sin(),
                    wall_m + (depth_m - wall_m) * (1.0 - angle.cos()),
                ]
            });
            let profile_rz: Vec<[f64; 2]> = outer.chain(inner).collect();
            lathe(&profile_rz, ROUND_SEGMENTS)
        }
        _ => {
            let arc = rng.gen_range(180.0_f64..250.0).to_radians();
            let length_over_width = rng.gen_range(0.5..3.0);
            let (radius_m, length_m) = if length_over_width > 1.0 {
                (extent_m / length_over_width / 2.0, extent_m)
            } else {
                (extent_m / 2.0, extent_m * length_over_width)
            };
            let wall_m = wall_m.min(radius_m / 4.0);
            // The arc is centred on the bottom (-y), open at the top.
            let start = -FRAC_PI_2 - arc / 2.0;
            let angles =
                (0..=PIPE_ARC_POINTS).map(|i| start + arc * i as f64 / PIPE_ARC_POINTS as f64);
            let outer = angles
                .clone()
                .map(|a| Point2::new(radius_m * a.cos(), radius_m * a.sin()));
            let inner = angles
                .rev()
                .map(|a| Point2::new((radius_m - wall_m) * a.cos(), (radius_m - wall_m) * a.sin()));
            let section: Vec<Point2<f64>> = outer.chain(inner).collect();
            prism(&section, length_m)
        }
    }
}

/// Icosphere (three subdivisions, 1280 triangles) displaced along its normals by a sum of
/// four smooth waves, then stretched on two axes.
fn blob(rng: &mut impl Rng) -> TriangleMesh {
    let waves: Vec<(Vector3<f64>, f64, f64, f64)> = (0..BLOB_WAVES)
        .map(|_| {
            let direction = in_unit_ball(rng)
                .try_normalize(1e-9)
                .unwrap_or_else(Vector3::x);
            let frequency = rng.gen_range(0.5..1.6);
            let phase = rng.gen_range(0.0..TAU);
            let amplitude = rng.gen_range(0.03..0.15);
            (direction, frequency, phase, amplitude)
        })
        .collect();
    // 0.5-1.6 cycles across the sphere's diameter: bumps and lobes, not wrinkles. The
    // amplitudes sum to below 0.6, so the radius stays above 0.4: the surface stays
    // star-shaped around the centre and cannot fold through itself.
    let stretch = Vector3::new(1.0, rng.gen_range(0.45..1.0), rng.gen_range(0.45..1.0));
    let mut mesh = icosphere(3);
    for vertex in &mut mesh.vertices_m {
        let unit = vertex.coords;
        let radius = 1.0
            + waves
                .iter()
                .map(|(direction, frequency, phase, amplitude)| {
                    amplitude * (frequency * PI * direction.dot(&unit) + phase).sin()
                })
                .sum::<f64>();
        *vertex = Point3::from((unit * radius).component_mul(&stretch));
    }
    orient_outward(&mut mesh);
    mesh
}

// ---------------------------------------------------------------------------------------
// Unions. Parts touch along faces (no shared volume) or the whole is mirror-symmetric, so
// the volume centroid of the parts is the centre of mass of the union.

/// Brackets of boxes of one width: L (two plates at a right angle), U (base and two
/// uprights), Z (base, web, top flange offset), T (base and a central upright).
fn bracket(rng: &mut impl Rng) -> TriangleMesh {
    let length = 1.0;
    let height: f64 = rng.gen_range(0.4..1.2);
    let width = rng.gen_range(0.25..1.0);
    let base_thickness = rng.gen_range(0.08..0.25) * height.min(length);
    let web_thickness = rng.gen_range(0.08..0.25) * height.min(length);
    let base = cuboid(Point3::origin(), Point3::new(length, width, base_thickness));
    let mut mesh = base;
    let upright = |x0: f64, top: f64| {
        cuboid(
            Point3::new(x0, 0.0, base_thickness),
            Point3::new(x0 + web_thickness, width, top),
        )
    };
    match rng.gen_range(0..4) {
        0 => append(&mut mesh, upright(0.0, height)),
        1 => {
            append(&mut mesh, upright(0.0, height));
            append(&mut mesh, upright(length - web_thickness, height));
        }
        2 => {
            let flange_thickness = base_thickness;
            let web_top = (height - flange_thickness).max(base_thickness + web_thickness);
            let x0 = length - web_thickness;
            append(&mut mesh, upright(x0, web_top));
            let flange_length = rng.gen_range(0.4..1.0);
            append(
                &mut mesh,
                cuboid(
                    Point3::new(x0, 0.0, web_top),
                    Point3::new(x0 + flange_length, width, web_top + flange_thickness),
                ),
            );
        }
        _ => append(
            &mut mesh,
            upright((length - web_thickness) * rng.gen_range(0.3..0.7), height),
        ),
    }
    mesh
}

/// A bar along x with a weight at each end: two equal spheres (the bar runs into them; the
/// whole is mirror-symmetric) or two discs of their own sizes butting onto the bar's ends.
fn dumbbell(rng: &mut impl Rng) -> TriangleMesh {
    let half_bar = rng.gen_range(0.4..1.2);
    let along_x = |p: &Point3<f64>| Point3::new(p.z, p.x, p.y);
    if rng.gen_bool(0.5) {
        // Below the half bar length, so the two spheres stay apart.
        let sphere_radius = half_bar * rng.gen_range(0.35..0.8);
        let bar_radius = sphere_radius * rng.gen_range(0.25..0.6);
        let mut mesh = mapped(
            cylinder_z(bar_radius, -half_bar, half_bar, ROUND_SEGMENTS),
            along_x,
        );
        for side in [-1.0, 1.0] {
            let sphere = icosphere(2);
            append(
                &mut mesh,
                mapped(sphere, |p| {
                    Point3::from(p.coords * sphere_radius) + Vector3::x() * side * half_bar
                }),
            );
        }
        mesh
    } else {
        let bar_radius = rng.gen_range(0.08..0.25);
        let mut mesh = mapped(
            cylinder_z(bar_radius, -half_bar, half_bar, ROUND_SEGMENTS),
            along_x,
        );
        for side in [-1.0, 1.0] {
            let disc_radius = bar_radius * rng.gen_range(1.8..4.0);
            let disc_thickness = rng.gen_range(0.08..0.4);
            let (z0, z1) = if side > 0.0 {
                (half_bar, half_bar + disc_thickness)
            } else {
                (-half_bar - disc_thickness, -half_bar)
            };
            append(
                &mut mesh,
                mapped(cylinder_z(disc_radius, z0, z1, ROUND_SEGMENTS), along_x),
            );
        }
        mesh
    }
}

/// A stem along z with a head sitting on its top: a disc, a dome (mushroom, knob) or a
/// hexagon (bolt).
fn mushroom(rng: &mut impl Rng) -> TriangleMesh {
    let stem_radius = rng.gen_range(0.1..0.35);
    let stem_height = rng.gen_range(0.3..2.0);
    let head_radius = stem_radius * rng.gen_range(1.4..3.5);
    let head_height = rng.gen_range(0.15..0.8) * head_radius;
    let dome_height = rng.gen_range(0.3..1.0) * head_radius;
    let mut mesh = cylinder_z(stem_radius, 0.0, stem_height, ROUND_SEGMENTS);
    let head = match rng.gen_range(0..3) {
        0 => cylinder_z(
            head_radius,
            stem_height,
            stem_height + head_height,
            ROUND_SEGMENTS,
        ),
        1 => {
            let profile_rz: Vec<[f64; 2]> = (0..=DOME_ARC_POINTS)
                .map(|i| {
                    let angle = FRAC_PI_2 * i as f64 / DOME_ARC_POINTS as f64;
                    [
                        head_radius * angle.cos(),
                        stem_height + dome_height * angle.sin(),
                    ]
                })
                .chain(std::iter::once([0.0, stem_height]))
                .collect();
            lathe(&profile_rz, ROUND_SEGMENTS)
        }
        _ => mapped(prism(&circle(head_radius, 6), head_height), |p| {
            p + Vector3::z() * stem_height
        }),
    };
    append(&mut mesh, head);
    mesh
}

// ---------------------------------------------------------------------------------------
// 2-D outlines, counter-clockwise, unit-free.

/// L: a unit-long foot and a leg of its own height, each arm 0.12-0.5 thick.
fn l_outline(rng: &mut impl Rng) -> Vec<Point2<f64>> {
    let height = rng.gen_range(0.5..1.5);
    let foot = rng.gen_range(0.12..0.5);
    let leg = rng.gen_range(0.12..0.5);
    vec![
        Point2::new(0.0, 0.0),
        Point2::new(1.0, 0.0),
        Point2::new(1.0, foot),
        Point2::new(leg, foot),
        Point2::new(leg, height),
        Point2::new(0.0, height),
    ]
}

/// T: a unit-wide top bar on a centred stem.
fn t_outline(rng: &mut impl Rng) -> Vec<Point2<f64>> {
    let half_bar = 0.5;
    let bar = rng.gen_range(0.12..0.4);
    let half_stem = rng.gen_range(0.08..0.3);
    let stem = rng.gen_range(0.3..1.3);
    vec![
        Point2::new(-half_stem, 0.0),
        Point2::new(half_stem, 0.0),
        Point2::new(half_stem, stem),
        Point2::new(half_bar, stem),
        Point2::new(half_bar, stem + bar),
        Point2::new(-half_bar, stem + bar),
        Point2::new(-half_bar, stem),
        Point2::new(-half_stem, stem),
    ]
}

/// U (channel): a unit-wide base and two side walls.
fn u_outline(rng: &mut impl Rng) -> Vec<Point2<f64>> {
    let height = rng.gen_range(0.3..1.3);
    let side = rng.gen_range(0.08..0.35);
    let base = rng.gen_range(0.08..0.35) * height;
    vec![
        Point2::new(0.0, 0.0),
        Point2::new(1.0, 0.0),
        Point2::new(1.0, height),
        Point2::new(1.0 - side, height),
        Point2::new(1.0 - side, base),
        Point2::new(side, base),
        Point2::new(side, height),
        Point2::new(0.0, height),
    ]
}

/// Plus: two crossing bars of their own lengths and widths.
fn plus_outline(rng: &mut impl Rng) -> Vec<Point2<f64>> {
    let (half_x, half_y) = (0.5, rng.gen_range(0.25..0.6));
    let (arm_x, arm_y) = (rng.gen_range(0.06..0.2), rng.gen_range(0.06..0.2));
    vec![
        Point2::new(arm_y, -arm_x),
        Point2::new(half_x, -arm_x),
        Point2::new(half_x, arm_x),
        Point2::new(arm_y, arm_x),
        Point2::new(arm_y, half_y),
        Point2::new(-arm_y, half_y),
        Point2::new(-arm_y, arm_x),
        Point2::new(-half_x, arm_x),
        Point2::new(-half_x, -arm_x),
        Point2::new(-arm_y, -arm_x),
        Point2::new(-arm_y, -half_y),
        Point2::new(arm_y, -half_y),
    ]
}

/// Star with `points` tips on a circle of `radius`, the notches at `inner_ratio` of it.
fn star_outline(points: usize, inner_ratio: f64, radius: f64) -> Vec<Point2<f64>> {
    (0..2 * points)
        .map(|i| {
            let angle = PI * i as f64 / points as f64;
            let r = if i % 2 == 0 {
                radius
            } else {
                radius * inner_ratio
            };
            Point2::new(r * angle.cos(), r * angle.sin())
        })
        .collect()
}

/// 5-12 vertices at jittered, still increasing angles and radii in [0.45, 1]: simple
/// because it is star-shaped around the origin.
fn random_star_shaped_outline(rng: &mut impl Rng) -> Vec<Point2<f64>> {
    let count = rng.gen_range(5..=12);
    // Jittered even angles keep neighbours apart, so no sliver edges.
    let step = TAU / count as f64;
    (0..count)
        .map(|i| {
            let angle = step * (i as f64 + rng.gen_range(-0.35..0.35));
            let radius = rng.gen_range(0.45..1.0);
            Point2::new(radius * angle.cos(), radius * angle.sin())
        })
        .collect()
}

/// Regular polygon (`sides` >= 3) or circle approximation inscribed in `radius`, first
/// vertex on +x.
fn circle(radius: f64, sides: usize) -> Vec<Point2<f64>> {
    (0..sides)
        .map(|i| {
            let angle = TAU * i as f64 / sides as f64;
            Point2::new(radius * angle.cos(), radius * angle.sin())
        })
        .collect()
}

/// Rounded rectangle centred on the origin, straight sides split so that a hole's points at
/// the same polar angles spread evenly.
fn rounded_rectangle(width: f64, depth: f64, corner: f64) -> Vec<Point2<f64>> {
    let (half_w, half_d) = (width / 2.0, depth / 2.0);
    let corner = corner.min(half_w).min(half_d);
    let centres = [
        Point2::new(half_w - corner, half_d - corner),
        Point2::new(-half_w + corner, half_d - corner),
        Point2::new(-half_w + corner, -half_d + corner),
        Point2::new(half_w - corner, -half_d + corner),
    ];
    let mut outline = Vec::new();
    for k in 0..centres.len() {
        let on_corner = |corner_index: usize, step: usize| {
            let angle = FRAC_PI_2 * (corner_index as f64 + step as f64 / CORNER_ARC_STEPS as f64);
            centres[corner_index % 4] + corner * Vector2::new(angle.cos(), angle.sin())
        };
        outline.extend((0..=CORNER_ARC_STEPS).map(|step| on_corner(k, step)));
        let (side_start, side_end) = (on_corner(k, CORNER_ARC_STEPS), on_corner(k + 1, 0));
        outline.extend(
            (1..SIDE_SPLITS)
                .map(|i| side_start + (side_end - side_start) * (i as f64 / SIDE_SPLITS as f64)),
        );
    }
    dedup_closed(outline)
}

/// Outside and bore of a tube, both sampled at the same `TUBE_SEGMENTS` polar angles; 0
/// sides means round. Corners of 4- and 6-sided outlines land on samples because 36 is a
/// multiple of both.
fn tube_outlines(
    outer_sides: usize,
    inner_sides: usize,
    outer_radius: f64,
    inner_radius: f64,
) -> (Vec<Point2<f64>>, Vec<Point2<f64>>) {
    let along = |sides: usize, radius: f64, angle: f64| {
        let r = if sides == 0 {
            radius
        } else {
            // Distance from the centre to a regular polygon's side, along `angle`.
            let wedge = TAU / sides as f64;
            radius * inradius_factor(sides) / (angle.rem_euclid(wedge) - wedge / 2.0).cos()
        };
        Point2::new(r * angle.cos(), r * angle.sin())
    };
    let angles = (0..TUBE_SEGMENTS).map(|i| TAU * i as f64 / TUBE_SEGMENTS as f64);
    (
        angles
            .clone()
            .map(|a| along(outer_sides, outer_radius, a))
            .collect(),
        angles
            .map(|a| along(inner_sides, inner_radius, a))
            .collect(),
    )
}

/// Inradius over circumradius of a regular polygon; 0 sides means a circle.
fn inradius_factor(sides: usize) -> f64 {
    if sides == 0 {
        1.0
    } else {
        (PI / sides as f64).cos()
    }
}

// ---------------------------------------------------------------------------------------
// Solid builders. Each returns one closed, outward-oriented component.

/// Axis-aligned box between two corners.
fn cuboid(min: Point3<f64>, max: Point3<f64>) -> TriangleMesh {
    let rectangle = [
        Point2::new(min.x, min.y),
        Point2::new(max.x, min.y),
        Point2::new(max.x, max.y),
        Point2::new(min.x, max.y),
    ];
    mapped(prism(&rectangle, max.z - min.z), |p| {
        p + Vector3::z() * min.z
    })
}

/// Cylinder around the z axis from `z0` to `z1`.
fn cylinder_z(radius: f64, z0: f64, z1: f64, segments: usize) -> TriangleMesh {
    lathe(
        &[[0.0, z0], [radius, z0], [radius, z1], [0.0, z1]],
        segments,
    )
}

/// `outline` (simple polygon, either winding) extruded along z from 0 to `depth`; the caps
/// are ear-clipped so concave outlines work.
fn prism(outline: &[Point2<f64>], depth: f64) -> TriangleMesh {
    let mut ccw = outline.to_vec();
    if polygon_area(&ccw) < 0.0 {
        ccw.reverse();
    }
    let n = ccw.len();
    let mut mesh = TriangleMesh {
        vertices_m: Vec::with_capacity(2 * n),
        triangles: Vec::with_capacity(4 * n),
    };
    for z in [0.0, depth] {
        mesh.vertices_m
            .extend(ccw.iter().map(|p| Point3::new(p.x, p.y, z)));
    }
    let top = n;
    for [a, b, c] in ear_clip(&ccw) {
        mesh.triangles
            .push([index(top + a), index(top + b), index(top + c)]);
        mesh.triangles.push([index(a), index(c), index(b)]);
    }
    for i in 0..n {
        let j = (i + 1) % n;
        mesh.triangles.push([index(i), index(j), index(top + j)]);
        mesh.triangles
            .push([index(i), index(top + j), index(top + i)]);
    }
    orient_outward(&mut mesh);
    mesh
}

/// The region between `outer` and `inner` extruded along z from 0 to `depth`. Both loops
/// have the same length and point `i` of each lies at (about) the same polar angle around
/// the origin, counter-clockwise, with the inner loop inside: every wedge between two
/// neighbouring angles is then a convex quad of the cap.
fn holed_prism(outer: &[Point2<f64>], inner: &[Point2<f64>], depth: f64) -> TriangleMesh {
    let n = outer.len().min(inner.len());
    let mut mesh = TriangleMesh {
        vertices_m: Vec::with_capacity(4 * n),
        triangles: Vec::with_capacity(8 * n),
    };
    for outline in [outer, inner] {
        for z in [0.0, depth] {
            mesh.vertices_m
                .extend(outline[..n].iter().map(|p| Point3::new(p.x, p.y, z)));
        }
    }
    let (outer_bottom, outer_top, inner_bottom, inner_top) = (0, n, 2 * n, 3 * n);
    for i in 0..n {
        let j = (i + 1) % n;
        let [ob_i, ob_j] = [outer_bottom + i, outer_bottom + j].map(index);
        let [ot_i, ot_j] = [outer_top + i, outer_top + j].map(index);
        let [ib_i, ib_j] = [inner_bottom + i, inner_bottom + j].map(index);
        let [it_i, it_j] = [inner_top + i, inner_top + j].map(index);
        mesh.triangles.extend([
            [ot_i, ot_j, it_j],
            [ot_i, it_j, it_i],
            [ob_i, ib_j, ob_j],
            [ob_i, ib_i, ib_j],
            [ob_i, ob_j, ot_j],
            [ob_i, ot_j, ot_i],
            [ib_j, ib_i, it_i],
            [ib_j, it_i, it_j],
        ]);
    }
    orient_outward(&mut mesh);
    mesh
}

/// The closed profile polygon `profile_rz` ([radius, z], radius >= 0) revolved about the z
/// axis in `segments` steps; profile points on the axis become single vertices, and profile
/// edges along the axis bound no surface.
fn lathe(profile_rz: &[[f64; 2]], segments: usize) -> TriangleMesh {
    // Below this a profile point is on the axis; profiles here put such points at exactly 0.
    const ON_AXIS: f64 = 1e-12;
    let mut mesh = TriangleMesh {
        vertices_m: Vec::new(),
        triangles: Vec::new(),
    };
    // Per profile point: its first vertex and whether it is a full ring.
    let mut rings = Vec::with_capacity(profile_rz.len());
    for &[radius, z] in profile_rz {
        let first = mesh.vertices_m.len();
        if radius <= ON_AXIS {
            mesh.vertices_m.push(Point3::new(0.0, 0.0, z));
            rings.push((first, false));
        } else {
            mesh.vertices_m.extend((0..segments).map(|k| {
                let angle = TAU * k as f64 / segments as f64;
                Point3::new(radius * angle.cos(), radius * angle.sin(), z)
            }));
            rings.push((first, true));
        }
    }
    let vertex = |(first, around): (usize, bool), k: usize| {
        index(if around { first + k % segments } else { first })
    };
    for j in 0..rings.len() {
        let (a, b) = (rings[j], rings[(j + 1) % rings.len()]);
        if !(a.1 || b.1) {
            continue;
        }
        for k in 0..segments {
            let (a0, a1, b0, b1) = (
                vertex(a, k),
                vertex(a, k + 1),
                vertex(b, k),
                vertex(b, k + 1),
            );
            // The quad a0 a1 b1 b0 loses one triangle where a ring shrinks to an axis point.
            if a.1 {
                mesh.triangles.push([a0, a1, b1]);
            }
            if b.1 {
                mesh.triangles.push([a0, b1, b0]);
            }
        }
    }
    orient_outward(&mut mesh);
    mesh
}

/// A sphere-like grid: a pole vertex at each end and one ring of `longitudes` vertices per
/// latitude (radians, increasing, strictly between the poles), each placed by `point`.
fn uv_sphere_like(
    latitudes: &[f64],
    longitudes: usize,
    point: impl Fn(f64, f64) -> Point3<f64>,
) -> TriangleMesh {
    let mut vertices_m = vec![point(-FRAC_PI_2, 0.0), point(FRAC_PI_2, 0.0)];
    for &latitude in latitudes {
        vertices_m.extend(
            (0..longitudes).map(|k| point(latitude, TAU * k as f64 / longitudes as f64 - PI)),
        );
    }
    let ring = |r: usize, k: usize| index(2 + r * longitudes + k % longitudes);
    let mut triangles = Vec::with_capacity(2 * longitudes * latitudes.len());
    let last = latitudes.len().saturating_sub(1);
    for k in 0..longitudes {
        triangles.push([0, ring(0, k + 1), ring(0, k)]);
        triangles.push([1, ring(last, k), ring(last, k + 1)]);
        for r in 0..last {
            triangles.push([ring(r, k), ring(r, k + 1), ring(r + 1, k + 1)]);
            triangles.push([ring(r, k), ring(r + 1, k + 1), ring(r + 1, k)]);
        }
    }
    let mut mesh = TriangleMesh {
        vertices_m,
        triangles,
    };
    orient_outward(&mut mesh);
    mesh
}

/// Unit icosphere: an icosahedron with each triangle split in four `subdivisions` times,
/// 20 * 4^subdivisions triangles. Symmetric under each coordinate reflection.
fn icosphere(subdivisions: usize) -> TriangleMesh {
    let phi = (1.0 + 5.0_f64.sqrt()) / 2.0;
    let mut vertices_m: Vec<Point3<f64>> = [
        (-1.0, phi, 0.0),
        (1.0, phi, 0.0),
        (-1.0, -phi, 0.0),
        (1.0, -phi, 0.0),
        (0.0, -1.0, phi),
        (0.0, 1.0, phi),
        (0.0, -1.0, -phi),
        (0.0, 1.0, -phi),
        (phi, 0.0, -1.0),
        (phi, 0.0, 1.0),
        (-phi, 0.0, -1.0),
        (-phi, 0.0, 1.0),
    ]
    .iter()
    .map(|&(x, y, z)| Point3::from(Vector3::new(x, y, z).normalize()))
    .collect();
    let mut triangles: Vec<[u32; 3]> = vec![
        [0, 11, 5],
        [0, 5, 1],
        [0, 1, 7],
        [0, 7, 10],
        [0, 10, 11],
        [1, 5, 9],
        [5, 11, 4],
        [11, 10, 2],
        [10, 7, 6],
        [7, 1, 8],
        [3, 9, 4],
        [3, 4, 2],
        [3, 2, 6],
        [3, 6, 8],
        [3, 8, 9],
        [4, 9, 5],
        [2, 4, 11],
        [6, 2, 10],
        [8, 6, 7],
        [9, 8, 1],
    ];
    for _ in 0..subdivisions {
        // Keyed by the sorted edge so both triangles on an edge share its midpoint.
        let mut midpoints: BTreeMap<(u32, u32), u32> = BTreeMap::new();
        let mut midpoint = |a: u32, b: u32, vertices_m: &mut Vec<Point3<f64>>| {
            *midpoints.entry((a.min(b), a.max(b))).or_insert_with(|| {
                let (pa, pb) = (vertices_m[a as usize], vertices_m[b as usize]);
                vertices_m.push(Point3::from((pa.coords + pb.coords).normalize()));
                index(vertices_m.len() - 1)
            })
        };
        let mut finer = Vec::with_capacity(4 * triangles.len());
        for [a, b, c] in triangles {
            let ab = midpoint(a, b, &mut vertices_m);
            let bc = midpoint(b, c, &mut vertices_m);
            let ca = midpoint(c, a, &mut vertices_m);
            finer.extend([[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]);
        }
        triangles = finer;
    }
    let mut mesh = TriangleMesh {
        vertices_m,
        triangles,
    };
    orient_outward(&mut mesh);
    mesh
}

/// Octahedron on the axes with the given semi-axes: the hull's fallback.
fn octahedron(radii: Vector3<f64>) -> TriangleMesh {
    let vertices_m = vec![
        Point3::new(radii.x, 0.0, 0.0),
        Point3::new(-radii.x, 0.0, 0.0),
        Point3::new(0.0, radii.y, 0.0),
        Point3::new(0.0, -radii.y, 0.0),
        Point3::new(0.0, 0.0, radii.z),
        Point3::new(0.0, 0.0, -radii.z),
    ];
    let triangles = vec![
        [0, 2, 4],
        [2, 1, 4],
        [1, 3, 4],
        [3, 0, 4],
        [2, 0, 5],
        [1, 2, 5],
        [3, 1, 5],
        [0, 3, 5],
    ];
    let mut mesh = TriangleMesh {
        vertices_m,
        triangles,
    };
    orient_outward(&mut mesh);
    mesh
}

// ---------------------------------------------------------------------------------------
// Polygon and mesh helpers.

/// Triangles (indices into `polygon`) covering a simple counter-clockwise polygon, by ear
/// clipping: O(n^2) per ear, fine for outlines of a few dozen points.
fn ear_clip(polygon: &[Point2<f64>]) -> Vec<[usize; 3]> {
    let cross = |o: Point2<f64>, a: Point2<f64>, b: Point2<f64>| (a - o).perp(&(b - o));
    let mut remaining: Vec<usize> = (0..polygon.len()).collect();
    let mut triangles = Vec::with_capacity(polygon.len().saturating_sub(2));
    while remaining.len() > 3 {
        let m = remaining.len();
        let corner = |k: usize| {
            (
                remaining[(k + m - 1) % m],
                remaining[k],
                remaining[(k + 1) % m],
            )
        };
        let is_ear = |k: usize| {
            let (a, b, c) = corner(k);
            let (pa, pb, pc) = (polygon[a], polygon[b], polygon[c]);
            if cross(pa, pb, pc) <= 0.0 {
                return false;
            }
            // No other remaining vertex inside or on the candidate (ties refuse the ear).
            remaining.iter().all(|&j| {
                j == a || j == b || j == c || {
                    let p = polygon[j];
                    !(cross(pa, pb, p) >= 0.0 && cross(pb, pc, p) >= 0.0 && cross(pc, pa, p) >= 0.0)
                }
            })
        };
        // Collinear runs or rounding can leave no strict ear; the most convex corner then
        // keeps the cap closed (at worst one sliver) instead of stalling.
        let k = (0..m).find(|&k| is_ear(k)).unwrap_or_else(|| {
            (0..m)
                .max_by(|&x, &y| {
                    let (a, b, c) = corner(x);
                    let (d, e, f) = corner(y);
                    cross(polygon[a], polygon[b], polygon[c])
                        .total_cmp(&cross(polygon[d], polygon[e], polygon[f]))
                })
                .unwrap_or(0)
        });
        let (a, b, c) = corner(k);
        triangles.push([a, b, c]);
        remaining.remove(k);
    }
    if let [a, b, c] = remaining[..] {
        triangles.push([a, b, c]);
    }
    triangles
}

/// Signed area, positive for counter-clockwise.
fn polygon_area(polygon: &[Point2<f64>]) -> f64 {
    let n = polygon.len();
    (0..n)
        .map(|i| polygon[i].coords.perp(&polygon[(i + 1) % n].coords))
        .sum::<f64>()
        / 2.0
}

/// Largest extent of an outline along x or y.
fn outline_span(outline: &[Point2<f64>]) -> f64 {
    let (mut min, mut max) = (
        Point2::new(f64::MAX, f64::MAX),
        Point2::new(f64::MIN, f64::MIN),
    );
    for p in outline {
        min = min.inf(p);
        max = max.sup(p);
    }
    (max - min).max()
}

/// Drops consecutive (and last-to-first) duplicate points.
fn dedup_closed(mut outline: Vec<Point2<f64>>) -> Vec<Point2<f64>> {
    const SAME: f64 = 1e-12;
    outline.dedup_by(|a, b| (*a - *b).norm() < SAME);
    while outline.len() > 1 {
        match (outline.first(), outline.last()) {
            (Some(first), Some(last)) if (first - last).norm() < SAME => {
                outline.pop();
            }
            _ => break,
        }
    }
    outline
}

/// A uniform point in the unit ball, by rejection from the cube (52% acceptance).
fn in_unit_ball(rng: &mut impl Rng) -> Vector3<f64> {
    loop {
        let v = Vector3::new(
            rng.gen_range(-1.0..1.0),
            rng.gen_range(-1.0..1.0),
            rng.gen_range(-1.0..1.0),
        );
        if v.norm_squared() <= 1.0 {
            return v;
        }
    }
}

/// A vertex index; meshes here hold a few thousand vertices, far below u32::MAX.
fn index(i: usize) -> u32 {
    i as u32
}

/// `mesh` with every vertex moved by `transform`, re-oriented outward (a reflection flips
/// the winding). For one closed component.
fn mapped(mut mesh: TriangleMesh, transform: impl Fn(&Point3<f64>) -> Point3<f64>) -> TriangleMesh {
    for vertex in &mut mesh.vertices_m {
        *vertex = transform(vertex);
    }
    orient_outward(&mut mesh);
    mesh
}

/// Adds `part` to `mesh` as a separate component.
fn append(mesh: &mut TriangleMesh, part: TriangleMesh) {
    let offset = index(mesh.vertices_m.len());
    mesh.vertices_m.extend(part.vertices_m);
    mesh.triangles
        .extend(part.triangles.iter().map(|t| t.map(|i| i + offset)));
}

/// Reverses every triangle of a closed single-component mesh whose signed volume is negative.
fn orient_outward(mesh: &mut TriangleMesh) {
    if signed_volume(mesh) < 0.0 {
        for triangle in &mut mesh.triangles {
            triangle.swap(1, 2);
        }
    }
}

/// Signed volume (positive when the triangles wind counter-clockwise seen from outside),
/// in the cube of the mesh's unit.
fn signed_volume(mesh: &TriangleMesh) -> f64 {
    volume_and_moment(mesh).0
}

/// Signed volume and first moment (volume times centroid), summed over the tetrahedra that
/// each triangle spans with the origin.
fn volume_and_moment(mesh: &TriangleMesh) -> (f64, Vector3<f64>) {
    let mut volume = 0.0;
    let mut moment = Vector3::zeros();
    for t in &mesh.triangles {
        let [a, b, c] = t.map(|i| mesh.vertices_m[i as usize].coords);
        let tetra_volume = a.dot(&b.cross(&c)) / 6.0;
        volume += tetra_volume;
        moment += (a + b + c) * (tetra_volume / 4.0);
    }
    (volume, moment)
}

/// Whether every directed edge appears once and its reverse once: closed and consistently
/// wound.
fn is_closed(mesh: &TriangleMesh) -> bool {
    let mut directed: BTreeMap<(u32, u32), usize> = BTreeMap::new();
    for &[a, b, c] in &mesh.triangles {
        for edge in [(a, b), (b, c), (c, a)] {
            *directed.entry(edge).or_insert(0) += 1;
        }
    }
    directed
        .iter()
        .all(|(&(a, b), &count)| count == 1 && directed.get(&(b, a)) == Some(&1))
}

/// `mesh` scaled about the origin so its largest axis-aligned extent is `extent_m`.
fn scaled_to_extent(mut mesh: TriangleMesh, extent_m: f64) -> TriangleMesh {
    let largest = aabb_size(&mesh).max();
    if largest > 0.0 {
        let scale = extent_m / largest;
        for vertex in &mut mesh.vertices_m {
            *vertex = Point3::from(vertex.coords * scale);
        }
    }
    mesh
}

/// `mesh` moved so its volume centroid is at the origin.
fn centred(mut mesh: TriangleMesh) -> TriangleMesh {
    let (volume, moment) = volume_and_moment(&mesh);
    if volume > 0.0 {
        let centroid = moment / volume;
        for vertex in &mut mesh.vertices_m {
            *vertex -= centroid;
        }
    }
    mesh
}

/// Size of the axis-aligned bounding box.
fn aabb_size(mesh: &TriangleMesh) -> Vector3<f64> {
    let mut min = Vector3::repeat(f64::MAX);
    let mut max = Vector3::repeat(f64::MIN);
    for vertex in &mesh.vertices_m {
        min = min.inf(&vertex.coords);
        max = max.sup(&vertex.coords);
    }
    if mesh.vertices_m.is_empty() {
        Vector3::zeros()
    } else {
        max - min
    }
}

/// Segments around round solids (cylinders, tori, cups): 32 keeps a 0.12 m part's facets
/// within 0.6 mm of the true circle.
const ROUND_SEGMENTS: usize = 32;
const PLATE_SEGMENTS: usize = 48;
const TUBE_SEGMENTS: usize = 36;
const TORUS_SECTION_POINTS: usize = 16;
const SUPERQUADRIC_LATITUDES: usize = 18;
const SUPERQUADRIC_LONGITUDES: usize = 32;
const BOWL_ARC_POINTS: usize = 10;
const DOME_ARC_POINTS: usize = 8;
const PIPE_ARC_POINTS: usize = 24;
const CORNER_ARC_STEPS: usize = 6;
const SIDE_SPLITS: usize = 6;
const BLOB_WAVES: usize = 4;
const HULL_ATTEMPTS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const SIZE_M: [f64; 2] = [0.035, 0.12];
    const SEEDS: u64 = 30;

    fn meshable() -> impl Iterator<Item = ShapeFamily> {
        ShapeFamily::ALL
            .into_iter()
            .filter(|f| *f != ShapeFamily::Mesh)
    }

    fn draw(family: ShapeFamily, seed: u64) -> TriangleMesh {
        procedural_mesh(family, SIZE_M, &mut StdRng::seed_from_u64(seed)).unwrap()
    }

    /// Triangle index sets of the connected components (triangles sharing a vertex).
    fn components(mesh: &TriangleMesh) -> Vec<Vec<usize>> {
        let mut parent: Vec<usize> = (0..mesh.vertices_m.len()).collect();
        fn root(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        for t in &mesh.triangles {
            for k in 1..3 {
                let (a, b) = (
                    root(&mut parent, t[0] as usize),
                    root(&mut parent, t[k] as usize),
                );
                parent[a] = b;
            }
        }
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, t) in mesh.triangles.iter().enumerate() {
            groups
                .entry(root(&mut parent, t[0] as usize))
                .or_default()
                .push(i);
        }
        groups.into_values().collect()
    }

    #[test]
    fn every_family_is_closed_outward_sized_and_centred() {
        for family in meshable() {
            let mut triangle_counts = Vec::new();
            for seed in 0..SEEDS {
                let mesh = draw(family, seed);
                let context = format!("{} seed {seed}", family.name());
                triangle_counts.push(mesh.triangles.len());
                assert!(
                    mesh.triangles.len() < 3000,
                    "{context}: {} triangles",
                    mesh.triangles.len()
                );
                assert!(
                    mesh.vertices_m
                        .iter()
                        .all(|v| v.coords.iter().all(|c| c.is_finite())),
                    "{context}: non-finite vertex"
                );
                assert!(
                    mesh.triangles
                        .iter()
                        .flatten()
                        .all(|&i| (i as usize) < mesh.vertices_m.len()),
                    "{context}: index out of range"
                );
                assert!(
                    is_closed(&mesh),
                    "{context}: not closed or inconsistently wound"
                );
                for component in components(&mesh) {
                    let part = TriangleMesh {
                        vertices_m: mesh.vertices_m.clone(),
                        triangles: component.iter().map(|&i| mesh.triangles[i]).collect(),
                    };
                    assert!(signed_volume(&part) > 0.0, "{context}: inward component");
                }
                let extent_m = aabb_size(&mesh).max();
                assert!(
                    (SIZE_M[0] - 1e-12..=SIZE_M[1] + 1e-12).contains(&extent_m),
                    "{context}: largest extent {extent_m} m"
                );
                let (volume, moment) = volume_and_moment(&mesh);
                let centroid_m = moment / volume;
                assert!(
                    centroid_m.norm() < 1e-6,
                    "{context}: centre of mass {centroid_m:?}"
                );
            }
            let (min, max) = (
                triangle_counts.iter().min().unwrap(),
                triangle_counts.iter().max().unwrap(),
            );
            println!("{:>12}: {min}-{max} triangles", family.name());
        }
    }

    #[test]
    fn same_seed_same_mesh_other_seed_other_mesh() {
        for family in meshable() {
            for seed in 0..SEEDS {
                assert_eq!(draw(family, seed), draw(family, seed), "{}", family.name());
                assert_ne!(
                    draw(family, seed),
                    draw(family, seed + 1),
                    "{}",
                    family.name()
                );
            }
        }
    }

    #[test]
    fn plates_are_two_to_eight_millimetres_thick() {
        for seed in 0..SEEDS {
            let thickness_m = aabb_size(&draw(ShapeFamily::Plate, seed)).min();
            // The final rescale moves the drawn thickness by at most a few per cent.
            assert!(
                (0.0019..=0.0085).contains(&thickness_m),
                "seed {seed}: {thickness_m} m"
            );
        }
    }

    #[test]
    fn ear_clipping_covers_l_and_star() {
        let l = [
            Point2::new(0.0, 0.0),
            Point2::new(3.0, 0.0),
            Point2::new(3.0, 1.0),
            Point2::new(1.0, 1.0),
            Point2::new(1.0, 2.0),
            Point2::new(0.0, 2.0),
        ];
        // Five-pointed star, tips at 1 and notches at 0.4: ten triangles (origin, tip, notch)
        // of area 0.5 * 1 * 0.4 * sin(36 degrees).
        let star = star_outline(5, 0.4, 1.0);
        let star_area = 10.0 * 0.5 * 0.4 * 36.0_f64.to_radians().sin();
        for (polygon, area) in [(&l[..], 4.0), (&star[..], star_area)] {
            let triangles = ear_clip(polygon);
            assert_eq!(triangles.len(), polygon.len() - 2);
            let areas: Vec<f64> = triangles
                .iter()
                .map(|t| polygon_area(&t.map(|i| polygon[i])))
                .collect();
            assert!(areas.iter().all(|a| *a > 0.0), "{areas:?}");
            assert!((areas.iter().sum::<f64>() - area).abs() < 1e-12);
            assert!((polygon_area(polygon) - area).abs() < 1e-12);
        }
    }

    #[test]
    fn serde_names_round_trip() {
        for family in ShapeFamily::ALL {
            let yaml = serde_yaml::to_string(&family).unwrap();
            assert_eq!(yaml.trim(), family.name());
            let back: ShapeFamily = serde_yaml::from_str(&yaml).unwrap();
            assert_eq!(back, family);
        }
        let procedural: Vec<&str> = ShapeFamily::ALL
            .into_iter()
            .filter(|f| f.is_procedural())
            .map(ShapeFamily::name)
            .collect();
        assert_eq!(
            procedural,
            [
                "convex_hull",
                "superquadric",
                "extrusion",
                "union",
                "ring",
                "plate",
                "shell",
                "blob"
            ]
        );
    }

    #[test]
    fn mesh_family_and_bad_sizes_are_refused() {
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(
            procedural_mesh(ShapeFamily::Mesh, SIZE_M, &mut rng),
            Err(FamilyError::FromFiles)
        );
        for size_m in [
            [0.0, 0.1],
            [0.1, 0.05],
            [f64::NAN, 0.1],
            [0.01, f64::INFINITY],
        ] {
            assert!(matches!(
                procedural_mesh(ShapeFamily::Blob, size_m, &mut rng),
                Err(FamilyError::Size { .. })
            ));
        }
    }
}
