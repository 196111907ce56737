//! Where a robot may reach: grasps are kept only when their centre lies inside the bin's
//! interior (from the segmentation and depth), inside the optional `workspace` box, and not on
//! a pixel of the background class.
//!
//! The bin interior is the convex hull of the bin-class pixels (their larger connected
//! components) in the image, bounded below by the bin floor in depth. A convex hull rather than
//! a filled mask because objects and bins cut by the image border leave the bin's outline open:
//! the hull still closes it. No bin pixels at all (a cell without a bin, or a view that misses
//! it) means no bin filter: then only the workspace box and the background rule apply.

use std::cell::OnceCell;

use crate::image::{DepthImage, MonoImage};

/// A bin covering fewer pixels than this fraction of the image (or 50 pixels) is treated as
/// absent: a few stray bin pixels must not turn the whole filter into a sliver.
const MIN_BIN_FRACTION: f64 = 0.005;
/// Bin-class components smaller than this fraction of the largest one are ignored, so that a
/// hallucinated bin blob elsewhere does not stretch the hull over the floor around the bin.
const MIN_COMPONENT_OF_LARGEST: f64 = 0.1;
/// The floor is the deep end of the bin's depths: this quantile, not the maximum, so that
/// depth noise and the bottom edge of the outer wall do not move it.
const FLOOR_QUANTILE: f64 = 0.9;
/// How far (metres, along the optical axis) a grasped surface may lie beyond the floor
/// estimate: the depth sensor's noise at a metre plus the floor's unevenness.
pub const FLOOR_TOLERANCE_M: f64 = 0.02;

/// An axis-aligned box in the camera optical frame, metres.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Workspace {
    pub min_m: [f64; 3],
    pub max_m: [f64; 3],
}

impl Workspace {
    /// From `[x_min, y_min, z_min, x_max, y_max, z_max]`: `Ok(None)` for an empty list (off),
    /// an error saying what is wrong otherwise.
    pub fn from_bounds(bounds_m: &[f64]) -> Result<Option<Self>, String> {
        if bounds_m.is_empty() {
            return Ok(None);
        }
        let Ok(b) = <[f64; 6]>::try_from(bounds_m) else {
            return Err(format!(
                "has {} numbers; give 6, [x_min, y_min, z_min, x_max, y_max, z_max] in metres in the camera optical frame, or [] for no workspace box",
                bounds_m.len()
            ));
        };
        if b.iter().any(|v| !v.is_finite()) {
            return Err("every bound must be a finite number of metres".into());
        }
        for (axis, k) in [("x", 0), ("y", 1), ("z", 2)] {
            if b[k] >= b[k + 3] {
                return Err(format!(
                    "{axis}_min ({}) must be less than {axis}_max ({})",
                    b[k],
                    b[k + 3]
                ));
            }
        }
        Ok(Some(Self {
            min_m: [b[0], b[1], b[2]],
            max_m: [b[3], b[4], b[5]],
        }))
    }

    pub fn contains(&self, point_in_camera_m: [f64; 3]) -> bool {
        (0..3).all(|k| (self.min_m[k]..=self.max_m[k]).contains(&point_in_camera_m[k]))
    }
}

/// The bin's interior as seen in one frame.
#[derive(Clone, Debug, PartialEq)]
pub struct BinInterior {
    /// Convex hull of the bin pixels, counter-clockwise in image coordinates (pixel corners).
    hull_px: Vec<[f64; 2]>,
    /// Camera z of the bin floor, metres; `None` when no bin pixel has a depth reading.
    floor_depth_m: Option<f64>,
}

impl BinInterior {
    /// The interior of the bin whose pixels are `bin_class` in `mask`, with its floor from
    /// `depth` (same resolution; NaN or 0 = no reading). `None` when the frame shows too little
    /// bin for a filter.
    pub fn from_segmentation(mask: &MonoImage, bin_class: u8, depth: &DepthImage) -> Option<Self> {
        let (w, h) = (mask.width as usize, mask.height as usize);
        let min_px = ((w * h) as f64 * MIN_BIN_FRACTION).max(50.0) as usize;
        let components = components_of(mask, bin_class);
        let largest = components.iter().map(Vec::len).max().unwrap_or(0);
        if largest < min_px {
            return None;
        }
        let keep = (largest as f64 * MIN_COMPONENT_OF_LARGEST) as usize;
        let pixels: Vec<usize> = components
            .into_iter()
            .filter(|c| c.len() >= keep)
            .flatten()
            .collect();
        // Per row the outermost pixels' corners: the hull of these is the hull of all pixels.
        let mut row_span = vec![(usize::MAX, 0usize); h];
        for &i in &pixels {
            let (u, v) = (i % w, i / w);
            row_span[v] = (row_span[v].0.min(u), row_span[v].1.max(u));
        }
        let mut corners = Vec::new();
        for (v, &(lo, hi)) in row_span.iter().enumerate() {
            if lo <= hi {
                for y in [v as f64, v as f64 + 1.0] {
                    corners.push([lo as f64, y]);
                    corners.push([hi as f64 + 1.0, y]);
                }
            }
        }
        let mut depths: Vec<f64> = if (depth.width, depth.height) == (mask.width, mask.height) {
            pixels
                .iter()
                .map(|&i| depth.depth_m[i] as f64)
                .filter(|d| d.is_finite() && *d > 0.0)
                .collect()
        } else {
            Vec::new()
        };
        depths.sort_by(f64::total_cmp);
        let floor_depth_m = (!depths.is_empty())
            .then(|| depths[((depths.len() - 1) as f64 * FLOOR_QUANTILE).round() as usize]);
        Some(Self {
            hull_px: convex_hull(corners),
            floor_depth_m,
        })
    }

    /// Whether a grasp centred at `center_px` (pixel centres at +0.5) on a surface `surface_depth_m`
    /// from the camera lies inside: within the hull, and not beyond the floor by more than
    /// [`FLOOR_TOLERANCE_M`] (compared along the optical axis with the floor's deep end, so a
    /// tilted view is checked leniently rather than wrongly).
    pub fn contains(&self, center_px: [f64; 2], surface_depth_m: f64) -> bool {
        let n = self.hull_px.len();
        let inside = n >= 3
            && (0..n).all(|k| {
                let (a, b) = (self.hull_px[k], self.hull_px[(k + 1) % n]);
                cross(a, b, center_px) >= 0.0
            });
        inside
            && self
                .floor_depth_m
                .is_none_or(|floor| surface_depth_m <= floor + FLOOR_TOLERANCE_M)
    }

    pub fn floor_depth_m(&self) -> Option<f64> {
        self.floor_depth_m
    }
}

/// Why a grasp was not published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unreachable {
    OnBackground,
    OutsideBin,
    OutsideWorkspace,
}

/// Grasp candidates dropped in one frame, by reason (each counted once, first reason wins in
/// the order background, bin, workspace).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GraspsDropped {
    pub on_background: u32,
    pub outside_bin: u32,
    pub outside_workspace: u32,
}

impl GraspsDropped {
    pub fn count(&mut self, reason: Unreachable) {
        match reason {
            Unreachable::OnBackground => self.on_background += 1,
            Unreachable::OutsideBin => self.outside_bin += 1,
            Unreachable::OutsideWorkspace => self.outside_workspace += 1,
        }
    }

    pub fn total(&self) -> u32 {
        self.on_background + self.outside_bin + self.outside_workspace
    }
}

/// The reach rules of one frame. The bin interior is found at the first check, so a frame
/// without grasp candidates costs nothing.
pub struct Reach<'a> {
    mask: &'a MonoImage,
    depth: &'a DepthImage,
    background_class: Option<u8>,
    bin_class: Option<u8>,
    bin: OnceCell<Option<BinInterior>>,
    workspace: Option<Workspace>,
}

impl<'a> Reach<'a> {
    /// `background_class` and `bin_class` are the class ids of those names in the model's
    /// class table (absent classes turn their rule off).
    pub fn new(
        mask: &'a MonoImage,
        background_class: Option<u8>,
        bin_class: Option<u8>,
        depth: &'a DepthImage,
        workspace: Option<Workspace>,
    ) -> Self {
        Self {
            mask,
            depth,
            background_class,
            bin_class,
            bin: OnceCell::new(),
            workspace,
        }
    }

    /// The bin's interior, `None` when the frame shows no bin (or the model has no bin class).
    pub fn bin(&self) -> Option<&BinInterior> {
        self.bin
            .get_or_init(|| {
                let class = self.bin_class?;
                BinInterior::from_segmentation(self.mask, class, self.depth)
            })
            .as_ref()
    }

    /// Checks a grasp centred at `center_px`, at `position_m` in the camera optical frame, on
    /// a surface `surface_depth_m` from the camera.
    pub fn check(
        &self,
        center_px: [f64; 2],
        position_m: [f64; 3],
        surface_depth_m: f64,
    ) -> Result<(), Unreachable> {
        let (w, h) = (self.mask.width as f64, self.mask.height as f64);
        let [u, v] = center_px;
        if !(0.0..w).contains(&u) || !(0.0..h).contains(&v) {
            return Err(Unreachable::OutsideBin);
        }
        let class = self.mask.data[v as usize * self.mask.width as usize + u as usize];
        if Some(class) == self.background_class {
            return Err(Unreachable::OnBackground);
        }
        if let Some(bin) = self.bin() {
            if !bin.contains(center_px, surface_depth_m) {
                return Err(Unreachable::OutsideBin);
            }
        }
        if let Some(workspace) = &self.workspace {
            if !workspace.contains(position_m) {
                return Err(Unreachable::OutsideWorkspace);
            }
        }
        Ok(())
    }

    /// [`Reach::check`], counting a refusal in `dropped`.
    pub fn keep(
        &self,
        dropped: &mut GraspsDropped,
        center_px: [f64; 2],
        position_m: [f64; 3],
        surface_depth_m: f64,
    ) -> bool {
        match self.check(center_px, position_m, surface_depth_m) {
            Ok(()) => true,
            Err(reason) => {
                dropped.count(reason);
                false
            }
        }
    }
}

/// 4-connected components of the pixels of `class`, as lists of pixel indices.
fn components_of(mask: &MonoImage, class: u8) -> Vec<Vec<usize>> {
    let (w, h) = (mask.width as usize, mask.height as usize);
    let mut seen = vec![false; w * h];
    let mut components = Vec::new();
    for start in 0..w * h {
        if seen[start] || mask.data[start] != class {
            continue;
        }
        seen[start] = true;
        let mut component = vec![start];
        let mut next = 0;
        while next < component.len() {
            let i = component[next];
            next += 1;
            let (u, v) = (i % w, i / w);
            let neighbours = [
                (u > 0).then(|| i - 1),
                (u + 1 < w).then(|| i + 1),
                (v > 0).then(|| i - w),
                (v + 1 < h).then(|| i + w),
            ];
            for j in neighbours.into_iter().flatten() {
                if !seen[j] && mask.data[j] == class {
                    seen[j] = true;
                    component.push(j);
                }
            }
        }
        components.push(component);
    }
    components
}

/// Twice the signed area of (a, b, p): positive when p lies left of a -> b.
fn cross(a: [f64; 2], b: [f64; 2], p: [f64; 2]) -> f64 {
    (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
}

/// Andrew's monotone chain: the hull, counter-clockwise, without collinear points.
fn convex_hull(mut points: Vec<[f64; 2]>) -> Vec<[f64; 2]> {
    points.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    points.dedup();
    if points.len() < 3 {
        return points;
    }
    let mut hull: Vec<[f64; 2]> = Vec::with_capacity(2 * points.len());
    for pass in [points.clone(), points.into_iter().rev().collect()] {
        let start = hull.len();
        for p in pass {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0
            {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_keeps_points_inside_its_box_only() {
        let box_m = Workspace::from_bounds(&[-0.3, -0.2, 0.5, 0.3, 0.2, 1.0])
            .unwrap()
            .unwrap();
        assert!(box_m.contains([0.0, 0.0, 0.7]));
        assert!(box_m.contains([0.3, -0.2, 0.5]), "bounds are inclusive");
        assert!(!box_m.contains([0.31, 0.0, 0.7]));
        assert!(!box_m.contains([0.0, -0.25, 0.7]));
        assert!(!box_m.contains([0.0, 0.0, 1.2]));
        assert!(!box_m.contains([0.0, 0.0, f64::NAN]));
    }

    #[test]
    fn workspace_bounds_are_checked() {
        assert_eq!(Workspace::from_bounds(&[]), Ok(None));
        assert!(Workspace::from_bounds(&[0.0, 0.0, 1.0])
            .unwrap_err()
            .contains("6"));
        assert!(
            Workspace::from_bounds(&[0.0, 0.0, 0.0, 1.0, f64::INFINITY, 1.0])
                .unwrap_err()
                .contains("finite")
        );
        assert!(Workspace::from_bounds(&[0.0, 0.5, 0.0, 1.0, 0.5, 1.0])
            .unwrap_err()
            .contains("y_min"));
    }

    /// A 100x80 top view at 1 m of a bin whose 4 px walls enclose x 20..80, y 10..70; its floor
    /// 1.0 m away, the cell's floor around it 1.012 m, objects 5 cm high inside.
    fn bin_scene() -> (MonoImage, DepthImage) {
        let (w, h) = (100u32, 80u32);
        let (background, bin, object) = (0u8, 1u8, 2u8);
        let mut data = vec![background; (w * h) as usize];
        let mut depth_m = vec![1.012f32; (w * h) as usize];
        for v in 10..70 {
            for u in 20..80 {
                let i = v * w as usize + u;
                let wall = !(24..76).contains(&u) || !(14..66).contains(&v);
                data[i] = bin;
                depth_m[i] = if wall { 0.9 } else { 1.0 };
                if (40..50).contains(&u) && (30..40).contains(&v) {
                    data[i] = object;
                    depth_m[i] = 0.95;
                }
            }
        }
        (
            MonoImage {
                width: w,
                height: h,
                data,
            },
            DepthImage {
                width: w,
                height: h,
                depth_m,
            },
        )
    }

    #[test]
    fn bin_interior_accepts_centres_inside_and_rejects_the_floor_outside() {
        let (mask, depth) = bin_scene();
        let interior = BinInterior::from_segmentation(&mask, 1, &depth).unwrap();
        assert!((interior.floor_depth_m().unwrap() - 1.0).abs() < 1e-6);
        assert!(
            interior.contains([45.5, 35.5], 0.95),
            "on the object in the bin"
        );
        assert!(interior.contains([30.5, 60.5], 1.0), "on the bin floor");
        assert!(!interior.contains([10.5, 40.5], 1.012), "left of the bin");
        assert!(
            !interior.contains([50.5, 75.5], 1.012),
            "below the bin in the image"
        );
        assert!(
            !interior.contains([45.5, 35.5], 1.1),
            "beneath the bin floor"
        );

        let reach = Reach::new(&mask, Some(0), Some(1), &depth, None);
        let mut dropped = GraspsDropped::default();
        assert!(reach.keep(&mut dropped, [45.5, 35.5], [0.0, 0.0, 0.98], 0.95));
        assert_eq!(
            reach.check([10.5, 40.5], [0.0; 3], 1.012),
            Err(Unreachable::OnBackground)
        );
        assert!(!reach.keep(&mut dropped, [10.5, 40.5], [0.0; 3], 1.012));
        assert_eq!(dropped.on_background, 1);
    }

    #[test]
    fn a_bin_cut_by_the_image_border_still_bounds_its_interior() {
        let (mut mask, depth) = bin_scene();
        // The left wall is off the image: the floor runs to the border, and objects lying
        // there leave bin pixels at the border only above and below them.
        for v in 10..70 {
            for u in 0..24 {
                mask.data[v * 100 + u] = if (20..60).contains(&v) && u < 15 {
                    2
                } else {
                    1
                };
            }
        }
        let interior = BinInterior::from_segmentation(&mask, 1, &depth).unwrap();
        assert!(
            interior.contains([2.5, 40.5], 1.0),
            "interior up to the border"
        );
        assert!(!interior.contains([90.5, 40.5], 1.0));
    }

    #[test]
    fn no_bin_pixels_turn_the_bin_rule_off_but_not_the_background_rule() {
        let (mut mask, depth) = bin_scene();
        for c in mask.data.iter_mut().filter(|c| **c == 1) {
            *c = 3;
        }
        assert!(BinInterior::from_segmentation(&mask, 1, &depth).is_none());
        let workspace = Workspace::from_bounds(&[-1.0, -1.0, 0.0, 1.0, 1.0, 0.99]).unwrap();
        let reach = Reach::new(&mask, Some(0), Some(1), &depth, workspace);
        assert!(reach.bin().is_none());
        assert_eq!(reach.check([30.5, 60.5], [0.0, 0.0, 0.98], 1.0), Ok(()));
        assert_eq!(
            reach.check([30.5, 60.5], [0.0, 0.0, 1.0], 1.0),
            Err(Unreachable::OutsideWorkspace)
        );
        assert_eq!(
            reach.check([5.5, 5.5], [0.0, 0.0, 0.98], 1.0),
            Err(Unreachable::OnBackground)
        );
    }

    #[test]
    fn a_stray_bin_blob_does_not_stretch_the_interior() {
        let (mut mask, depth) = bin_scene();
        for v in 72..75 {
            for u in 90..93 {
                mask.data[v * 100 + u] = 1;
            }
        }
        let interior = BinInterior::from_segmentation(&mask, 1, &depth).unwrap();
        assert!(!interior.contains([85.5, 70.5], 1.0));
    }
}
