//! `perception_train eval --pipeline config/perception.yaml --data DIR`: the node's own pipeline
//! (the same `Pipeline::infer`, models and parameters as the node, no ROS) on a generated data
//! set folder, measured against its ground truth.
//!
//! The parameters come from the node's ROS parameters file, read here without r2r: every
//! `ros__parameters` section in it (e.g. under `/**` or `perception_node`) is merged in file
//! order, keys named as the node names them; keys this evaluation does not use are ignored
//! and missing ones take the node's defaults.
//!
//! Metrics (one JSON object, see [`PipelineMetrics`]):
//! - `foreground_iou`: IoU of "object" pixels (every object class and `boundary`, i.e. neither
//!   `background` nor `bin`) between the pipeline's class mask and the ground-truth mask,
//!   pooled over all frames (intersections and unions summed).
//! - `bin_iou`: the same for the `bin` class.
//! - `instance_recall` / `instance_precision`: ground-truth instances (ids of `instances/`,
//!   boundary pixels included) with at least `min_instance_px` visible pixels, and the
//!   pipeline's instances (`segmentation/instances`), matched one to one, greedily by
//!   decreasing mask IoU, where the IoU is at least 0.5. Recall = matched / ground-truth
//!   instances; precision = matched / predicted instances. A predicted instance matched to a
//!   ground-truth instance under `min_instance_px` is ignored (neither found nor false).
//! - `frames_with_grasp`: of the frames with at least one ground-truth instance as above, the
//!   fraction with at least one published grasp.
//! - A published grasp *matches* a label when a labelled candidate of the same gripper has its
//!   centre within 4 px and (parallel jaw) its closing direction within 20 degrees (mod 180);
//!   the nearest such label (by centre distance) is its match, and its `success` the grasp's
//!   outcome.
//! - `top1_grasp_success`: over frames with at least one published grasp, the fraction whose
//!   top grasp's match succeeds; a top grasp that matches no label counts as a failure here,
//!   and is also counted in `top1_unmatched` (`top1_grasp_success_matched` is the success rate
//!   over matched top grasps only).
//! - `grasps_outside_bin`: published grasps (all, not only the top one) whose centre pixel
//!   (floor of `center_px`) is not inside the convex hull of the ground-truth `bin` pixels;
//!   frames without bin pixels are not checked (`frames_without_bin`).
//! - `grasp_quality_ece`: expected calibration error (10 bins) of the published grasps'
//!   qualities against their matched labels' success (unmatched grasps left out;
//!   `grasps_matched` of `grasps_published`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::BinDataset;
use crate::image::{CameraIntrinsics, DepthImage, MonoImage, RgbImage};
use crate::models::ModelFolder;
use crate::pipeline::{select_device, DeviceChoice, Frame, Gripper, InferOptions, Pipeline};
use crate::postprocess::{GraspSampling, InstanceImage, SuctionCup, Workspace};
use crate::scene::grasps::{GraspLabel, GripperKind};
use crate::scene::labels::FrameLabels;

/// Centre distance (pixels) and closing-direction difference (degrees) within which a published
/// grasp matches a labelled candidate.
pub const MATCH_RADIUS_PX: f64 = 4.0;
pub const MATCH_ANGLE_DEG: f64 = 20.0;
/// Mask IoU at which an instance counts as found.
pub const INSTANCE_IOU: f64 = 0.5;

/// The node's parameters that decide what the pipeline does, read from its parameters file
/// without ROS. Key names and defaults are the node's (`src/ros/params.rs`, `NodeParams`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct PipelineParams {
    pub device: String,
    pub models_dir: String,
    pub segmentation_model: String,
    pub depth_model: String,
    pub pose_model: String,
    pub grasp_model: String,
    pub grasp_gripper: String,
    pub grasp_finger_depth_m: f64,
    pub grasp_top_k: i64,
    pub grasp_min_quality: f64,
    pub workspace: Vec<f64>,
    pub overlay_alpha: f64,
    pub min_instance_px: i64,
}

impl Default for PipelineParams {
    fn default() -> Self {
        Self {
            device: "auto".into(),
            models_dir: "models".into(),
            segmentation_model: "unet_bin_seg".into(),
            depth_model: "depth_bin".into(),
            pose_model: String::new(),
            grasp_model: "gqcnn_parallel_jaw".into(),
            grasp_gripper: "parallel_jaw".into(),
            grasp_finger_depth_m: 0.03,
            grasp_top_k: 10,
            grasp_min_quality: 0.5,
            workspace: Vec::new(),
            overlay_alpha: 0.5,
            min_instance_px: 50,
        }
    }
}

impl PipelineParams {
    /// Reads the node's parameters file: every `ros__parameters` section, merged in order.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        Self::from_yaml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    pub fn from_yaml(text: &str) -> anyhow::Result<Self> {
        let doc: serde_yaml::Value = serde_yaml::from_str(text)?;
        let mut merged = serde_yaml::Mapping::new();
        let mut sections = 0;
        if let Some(nodes) = doc.as_mapping() {
            for (_, node) in nodes {
                if let Some(params) = node.get("ros__parameters").and_then(|p| p.as_mapping()) {
                    sections += 1;
                    for (k, v) in params {
                        merged.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        if sections == 0 {
            anyhow::bail!(
                "no `<node>: ros__parameters:` section (config/perception.yaml's layout)"
            );
        }
        let params: Self = serde_yaml::from_value(serde_yaml::Value::Mapping(merged))?;
        params.check()?;
        Ok(params)
    }

    fn check(&self) -> anyhow::Result<()> {
        let in_range = |name: &str, v: f64, lo: f64, hi: f64| {
            if v.is_finite() && (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "parameter '{name}' = {v}: must lie in [{lo}, {hi}]"
                ))
            }
        };
        in_range("grasp_min_quality", self.grasp_min_quality, 0.0, 1.0)?;
        in_range("grasp_top_k", self.grasp_top_k as f64, 1.0, 1000.0)?;
        in_range("min_instance_px", self.min_instance_px as f64, 1.0, 1e6)?;
        in_range("overlay_alpha", self.overlay_alpha, 0.0, 1.0)?;
        in_range("grasp_finger_depth_m", self.grasp_finger_depth_m, 0.0, 0.2)?;
        self.grippers()?;
        self.workspace_box()?;
        if self.segmentation_model.is_empty() || self.models_dir.is_empty() {
            anyhow::bail!("models_dir and segmentation_model must name the segmentation model");
        }
        Ok(())
    }

    /// (parallel jaw, suction), as the node reads `grasp_gripper`.
    pub fn grippers(&self) -> anyhow::Result<(bool, bool)> {
        let both = match self.grasp_gripper.as_str() {
            "parallel_jaw" => (true, false),
            "suction" => (false, true),
            "both" => (true, true),
            other => anyhow::bail!(
                "parameter 'grasp_gripper' = '{other}': must be 'parallel_jaw', 'suction' or 'both'"
            ),
        };
        if self.grasp_gripper == "both" && self.grasp_model.is_empty() {
            anyhow::bail!("grasp_gripper 'both' needs a parallel-jaw grasp_model");
        }
        Ok(both)
    }

    pub fn workspace_box(&self) -> anyhow::Result<Option<Workspace>> {
        Workspace::from_bounds(&self.workspace)
            .map_err(|p| anyhow::anyhow!("parameter 'workspace' = {:?}: {p}", self.workspace))
    }

    /// The options the node passes to `infer` (no overlay: nobody subscribes here).
    pub fn infer_options(&self) -> anyhow::Result<InferOptions> {
        Ok(InferOptions {
            overlay: false,
            overlay_alpha: self.overlay_alpha as f32,
            min_instance_px: self.min_instance_px as u32,
            grasp_top_k: self.grasp_top_k as usize,
            grasp_min_quality: self.grasp_min_quality as f32,
            workspace: self.workspace_box()?,
        })
    }

    fn model_dir(&self, name: &str) -> Option<PathBuf> {
        (!name.is_empty()).then(|| PathBuf::from(&self.models_dir).join(name))
    }

    /// Loads the heads as the node's `load_pipeline` does. `device` overrides the file's.
    pub fn load_pipeline(&self, device: Option<DeviceChoice>) -> anyhow::Result<Pipeline> {
        let choice = match device {
            Some(d) => d,
            None => self
                .device
                .parse()
                .map_err(|e: String| anyhow::anyhow!("parameter 'device': {e}"))?,
        };
        let device = select_device(choice).device;
        let load = |name: &str| ModelFolder::new(self.model_dir(name).expect("non-empty"));
        let mut pipeline = Pipeline::new(&load(&self.segmentation_model), device)?;
        if !self.depth_model.is_empty() {
            pipeline = pipeline.with_depth(&load(&self.depth_model))?;
        }
        if !self.pose_model.is_empty() {
            pipeline = pipeline.with_pose(&load(&self.pose_model))?;
        }
        let (parallel_jaw, suction) = self.grippers()?;
        if parallel_jaw && !self.grasp_model.is_empty() {
            let sampling = GraspSampling {
                finger_depth_m: self.grasp_finger_depth_m,
                ..Default::default()
            };
            pipeline = pipeline.with_grasp(&load(&self.grasp_model), sampling)?;
        }
        if suction {
            pipeline = pipeline.with_suction(SuctionCup::default());
        }
        Ok(pipeline)
    }
}

/// What `eval --pipeline` prints.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PipelineMetrics {
    pub frames: usize,
    pub foreground_iou: f64,
    pub bin_iou: f64,
    pub instance_recall: f64,
    pub instance_precision: f64,
    pub instances_true: usize,
    pub instances_predicted: usize,
    pub frames_with_object: usize,
    pub frames_with_grasp: f64,
    pub top1_grasp_success: f64,
    pub top1_grasp_success_matched: f64,
    pub top1_unmatched: usize,
    pub grasps_published: usize,
    pub grasps_matched: usize,
    pub grasps_outside_bin: usize,
    pub frames_without_bin: usize,
    pub grasp_quality_ece: f64,
}

/// Pooled intersection and union of one pixel set.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct IouSum {
    pub intersection: u64,
    pub union: u64,
}

impl IouSum {
    /// Adds one frame: `truth[i]` and `predicted[i]` say whether pixel i is in the set.
    pub fn add(
        &mut self,
        truth: impl Iterator<Item = bool>,
        predicted: impl Iterator<Item = bool>,
    ) {
        for (t, p) in truth.zip(predicted) {
            self.intersection += (t && p) as u64;
            self.union += (t || p) as u64;
        }
    }

    /// 1 when neither ever had a pixel.
    pub fn iou(&self) -> f64 {
        if self.union == 0 {
            1.0
        } else {
            self.intersection as f64 / self.union as f64
        }
    }
}

/// Instances of one frame matched one to one at mask IoU >= `INSTANCE_IOU`, greedily by
/// decreasing IoU: (ground-truth instances with at least `min_pixels` pixels, predicted
/// instances, matches). A prediction matched to a smaller ground-truth instance is left out of
/// both counts. Id 0 is none.
pub fn match_instances(truth: &[u16], predicted: &[u16], min_pixels: u32) -> (usize, usize, usize) {
    let mut truth_area: HashMap<u16, u32> = HashMap::new();
    let mut predicted_area: HashMap<u16, u32> = HashMap::new();
    let mut overlap: HashMap<(u16, u16), u32> = HashMap::new();
    for (&t, &p) in truth.iter().zip(predicted) {
        if t != 0 {
            *truth_area.entry(t).or_default() += 1;
        }
        if p != 0 {
            *predicted_area.entry(p).or_default() += 1;
        }
        if t != 0 && p != 0 {
            *overlap.entry((t, p)).or_default() += 1;
        }
    }
    let counted = |t: &u16| truth_area[t] >= min_pixels;
    let mut pairs: Vec<(f64, u16, u16)> = overlap
        .iter()
        .map(|(&(t, p), &i)| {
            let union = truth_area[&t] + predicted_area[&p] - i;
            (i as f64 / union as f64, t, p)
        })
        .filter(|(iou, _, _)| *iou >= INSTANCE_IOU)
        .collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    let (mut used_t, mut used_p) = (Vec::new(), Vec::new());
    for (_, t, p) in pairs {
        if !used_t.contains(&t) && !used_p.contains(&p) {
            used_t.push(t);
            used_p.push(p);
        }
    }
    // A prediction matched to a ground-truth instance too small to count is ignored: neither
    // found nor false.
    let ignored = used_t.iter().filter(|t| !counted(t)).count();
    let matched = used_t.len() - ignored;
    let truths = truth_area.keys().filter(|t| counted(t)).count();
    (truths, predicted_area.len() - ignored, matched)
}

/// The nearest labelled candidate of the same gripper within `MATCH_RADIUS_PX` and (parallel
/// jaw) `MATCH_ANGLE_DEG` of a grasp at `center_px`, closing at `angle_rad`.
pub fn match_grasp(
    labels: &[GraspLabel],
    gripper: Gripper,
    center_px: [f64; 2],
    angle_rad: f64,
) -> Option<&GraspLabel> {
    let kind = match gripper {
        Gripper::ParallelJaw => GripperKind::ParallelJaw,
        Gripper::Suction => GripperKind::Suction,
    };
    labels
        .iter()
        .filter(|l| l.gripper == kind)
        .filter(|l| {
            kind == GripperKind::Suction || {
                let da = (l.angle_rad - angle_rad).rem_euclid(std::f64::consts::PI);
                da.min(std::f64::consts::PI - da).to_degrees() <= MATCH_ANGLE_DEG
            }
        })
        .map(|l| {
            let d = (l.center_px[0] - center_px[0]).hypot(l.center_px[1] - center_px[1]);
            (d, l)
        })
        .filter(|(d, _)| *d <= MATCH_RADIUS_PX)
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, l)| l)
}

/// The convex hull (counter-clockwise in image coordinates' orientation, no collinear points)
/// of the pixels where `inside` holds, as integer pixel coordinates; empty when none.
pub fn pixel_hull(width: usize, height: usize, inside: impl Fn(usize) -> bool) -> Vec<[i64; 2]> {
    // Only the leftmost and rightmost pixel of each row can be hull vertices.
    let mut points = Vec::new();
    for y in 0..height {
        let row = (0..width).filter(|&x| inside(y * width + x));
        let (mut lo, mut hi) = (None, None);
        for x in row {
            lo.get_or_insert(x);
            hi = Some(x);
        }
        if let (Some(lo), Some(hi)) = (lo, hi) {
            points.push([lo as i64, y as i64]);
            if hi != lo {
                points.push([hi as i64, y as i64]);
            }
        }
    }
    points.sort();
    points.dedup();
    if points.len() < 3 {
        return points;
    }
    let cross = |o: [i64; 2], a: [i64; 2], b: [i64; 2]| {
        (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
    };
    let mut hull: Vec<[i64; 2]> = Vec::new();
    for pass in 0..2 {
        let start = hull.len();
        let ordered: Box<dyn Iterator<Item = &[i64; 2]>> = if pass == 0 {
            Box::new(points.iter())
        } else {
            Box::new(points.iter().rev())
        };
        for &p in ordered {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0
            {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}

/// Whether pixel `p` lies in (or on) the hull from [`pixel_hull`].
pub fn in_hull(hull: &[[i64; 2]], p: [i64; 2]) -> bool {
    match hull.len() {
        0 => false,
        1 => hull[0] == p,
        2 => {
            let (a, b) = (hull[0], hull[1]);
            let cross = (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]);
            cross == 0
                && (a[0].min(b[0])..=a[0].max(b[0])).contains(&p[0])
                && (a[1].min(b[1])..=a[1].max(b[1])).contains(&p[1])
        }
        n => (0..n).all(|i| {
            let (a, b) = (hull[i], hull[(i + 1) % n]);
            (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]) >= 0
        }),
    }
}

/// Accumulates the metrics frame by frame.
#[derive(Default)]
pub struct PipelineTally {
    frames: usize,
    foreground: IouSum,
    bin: IouSum,
    instances_true: usize,
    instances_predicted: usize,
    instances_matched: usize,
    frames_with_object: usize,
    frames_with_object_and_grasp: usize,
    frames_with_grasp: usize,
    top1_success: usize,
    top1_unmatched: usize,
    grasps_published: usize,
    grasps_outside_bin: usize,
    frames_without_bin: usize,
    qualities: Vec<f32>,
    outcomes: Vec<bool>,
}

/// One frame's prediction, as the metrics see it.
pub struct FramePrediction<'a> {
    /// Per pixel: is it foreground (object or boundary) / bin?
    pub foreground: &'a [bool],
    pub bin: &'a [bool],
    pub instances: &'a [u16],
    /// Published grasps, best first: gripper, centre pixel, closing angle, quality.
    pub grasps: &'a [(Gripper, [f64; 2], f64, f32)],
}

/// One frame's ground truth, as the metrics see it.
pub struct FrameTruth<'a> {
    pub width: usize,
    pub height: usize,
    pub foreground: &'a [bool],
    pub bin: &'a [bool],
    pub instances: &'a [u16],
    pub grasps: &'a [GraspLabel],
}

impl PipelineTally {
    pub fn add(&mut self, truth: &FrameTruth, predicted: &FramePrediction, min_instance_px: u32) {
        self.frames += 1;
        self.foreground.add(
            truth.foreground.iter().copied(),
            predicted.foreground.iter().copied(),
        );
        self.bin
            .add(truth.bin.iter().copied(), predicted.bin.iter().copied());
        let (t, p, m) = match_instances(truth.instances, predicted.instances, min_instance_px);
        self.instances_true += t;
        self.instances_predicted += p;
        self.instances_matched += m;
        let has_grasp = !predicted.grasps.is_empty();
        if t > 0 {
            self.frames_with_object += 1;
            self.frames_with_object_and_grasp += has_grasp as usize;
        }
        let hull = pixel_hull(truth.width, truth.height, |i| truth.bin[i]);
        if hull.is_empty() {
            self.frames_without_bin += 1;
        }
        for (rank, &(gripper, center, angle, quality)) in predicted.grasps.iter().enumerate() {
            self.grasps_published += 1;
            if !hull.is_empty() {
                let pixel = center.map(|c| c.floor() as i64);
                self.grasps_outside_bin += !in_hull(&hull, pixel) as usize;
            }
            let matched = match_grasp(truth.grasps, gripper, center, angle);
            if let Some(label) = matched {
                self.qualities.push(quality);
                self.outcomes.push(label.success);
            }
            if rank == 0 {
                self.frames_with_grasp += 1;
                match matched {
                    Some(label) => self.top1_success += label.success as usize,
                    None => self.top1_unmatched += 1,
                }
            }
        }
    }

    pub fn finish(&self) -> PipelineMetrics {
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        PipelineMetrics {
            frames: self.frames,
            foreground_iou: self.foreground.iou(),
            bin_iou: self.bin.iou(),
            instance_recall: ratio(self.instances_matched, self.instances_true),
            instance_precision: ratio(self.instances_matched, self.instances_predicted),
            instances_true: self.instances_true,
            instances_predicted: self.instances_predicted,
            frames_with_object: self.frames_with_object,
            frames_with_grasp: ratio(self.frames_with_object_and_grasp, self.frames_with_object),
            top1_grasp_success: ratio(self.top1_success, self.frames_with_grasp),
            top1_grasp_success_matched: ratio(
                self.top1_success,
                self.frames_with_grasp - self.top1_unmatched,
            ),
            top1_unmatched: self.top1_unmatched,
            grasps_published: self.grasps_published,
            grasps_matched: self.qualities.len(),
            grasps_outside_bin: self.grasps_outside_bin,
            frames_without_bin: self.frames_without_bin,
            grasp_quality_ece: super::expected_calibration_error(
                &self.qualities,
                &self.outcomes,
                10,
            ),
        }
    }
}

/// Pixels of classes that are neither `background` nor `bin` (objects and `boundary`), and of
/// `bin`, by class name.
fn class_sets(names: &[String], mask: &[u8]) -> (Vec<bool>, Vec<bool>) {
    let foreground: Vec<bool> = names
        .iter()
        .map(|n| n != "background" && n != "bin")
        .collect();
    let bin: Vec<bool> = names.iter().map(|n| n == "bin").collect();
    let get = |table: &[bool], c: u8| table.get(c as usize).copied().unwrap_or(false);
    (
        mask.iter().map(|&c| get(&foreground, c)).collect(),
        mask.iter().map(|&c| get(&bin, c)).collect(),
    )
}

/// The frame as the node receives it from an RGB-D camera: colour, depth in metres (NaN where
/// the sensor has no reading) and the labelled intrinsics.
pub fn dataset_frame(
    data: &BinDataset,
    index: usize,
    labels: &FrameLabels,
) -> anyhow::Result<Frame> {
    let (width, height) = (data.width, data.height);
    let rgb = data.rgb(index).map_err(anyhow::Error::msg)?;
    let depth = data.depth_mm(index).map_err(anyhow::Error::msg)?;
    let k = &labels.intrinsics;
    Ok(Frame {
        rgb: RgbImage {
            width,
            height,
            data: rgb,
        },
        depth: Some(DepthImage {
            width,
            height,
            depth_m: depth
                .iter()
                .map(|&d| if d == 0 { f32::NAN } else { d as f32 / 1000.0 })
                .collect(),
        }),
        camera: Some(CameraIntrinsics {
            width,
            height,
            fx_px: k.fx,
            fy_px: k.fy,
            cx_px: k.cx,
            cy_px: k.cy,
        }),
    })
}

/// The ground-truth instance ids (`instances/NNNNNN.png`, 16-bit).
pub fn dataset_instances(data: &BinDataset, index: usize) -> anyhow::Result<InstanceImage> {
    Ok(InstanceImage {
        width: data.width,
        height: data.height,
        ids: data.instances(index).map_err(anyhow::Error::msg)?,
    })
}

/// Runs `pipeline` with `options` on every frame of `data` (at most `limit`) and measures it.
pub fn evaluate_pipeline(
    pipeline: &Pipeline,
    options: &InferOptions,
    data: &Path,
    limit: Option<usize>,
) -> anyhow::Result<PipelineMetrics> {
    let data = BinDataset::open(data).map_err(anyhow::Error::msg)?;
    let predicted_names = pipeline.class_names();
    let mut tally = PipelineTally::default();
    let (width, height) = (data.width as usize, data.height as usize);
    for index in 0..limit.map_or(data.count, |l| l.min(data.count)) {
        let labels = data.labels(index).map_err(anyhow::Error::msg)?;
        let frame = dataset_frame(&data, index, &labels)?;
        let truth_mask = data.mask(index).map_err(anyhow::Error::msg)?;
        let truth_instances = dataset_instances(&data, index)?;
        let out = pipeline.infer(&frame, options)?;
        let (truth_fg, truth_bin) = class_sets(&data.class_names, &truth_mask);
        let MonoImage { data: mask, .. } = &out.mask;
        let (pred_fg, pred_bin) = class_sets(&predicted_names, mask);
        let grasps: Vec<_> = out
            .grasps
            .iter()
            .map(|g| {
                (
                    g.gripper,
                    g.candidate.center_px,
                    g.candidate.angle_rad,
                    g.quality,
                )
            })
            .collect();
        tally.add(
            &FrameTruth {
                width,
                height,
                foreground: &truth_fg,
                bin: &truth_bin,
                instances: &truth_instances.ids,
                grasps: &labels.grasps,
            },
            &FramePrediction {
                foreground: &pred_fg,
                bin: &pred_bin,
                instances: &out.instances.ids,
                grasps: &grasps,
            },
            options.min_instance_px,
        );
    }
    Ok(tally.finish())
}

/// `eval --pipeline PARAMS --data DIR`: the node's parameters file, its pipeline, the metrics.
pub fn evaluate_node_pipeline(
    params_file: &Path,
    data: &Path,
    device: Option<DeviceChoice>,
) -> anyhow::Result<PipelineMetrics> {
    let params = PipelineParams::from_file(params_file)?;
    let pipeline = params.load_pipeline(device)?;
    evaluate_pipeline(&pipeline, &params.infer_options()?, data, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::dataset::{write_dataset, Generator};

    /// A fresh data set folder of `count` frames of `scene_yaml` (default world when `None`).
    fn generated_folder(
        tag: &str,
        scene_yaml: Option<&str>,
        size: (u32, u32),
        count: usize,
    ) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "perception-pipeline-eval-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let (config, path) = match scene_yaml {
            Some(name) => {
                let path = PathBuf::from(format!(
                    "{}/config/scene/{name}",
                    env!("CARGO_MANIFEST_DIR")
                ));
                let text = std::fs::read_to_string(&path).unwrap();
                (serde_yaml::from_str(&text).unwrap(), path)
            }
            None => (
                Default::default(),
                PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            ),
        };
        let generator = Generator::new(config, size.0, size.1, 31, &path).unwrap();
        write_dataset(&generator, count, &dir, None, &|_| {}).unwrap();
        dir
    }

    fn label(
        gripper: GripperKind,
        center_px: [f64; 2],
        angle_rad: f64,
        success: bool,
    ) -> GraspLabel {
        GraspLabel {
            gripper,
            instance_id: 1,
            quality: success as u8 as f64,
            success,
            width_m: 0.03,
            center_cell_m: [0.0; 3],
            approach_cell: [0.0, 0.0, -1.0],
            closing_axis_cell: [1.0, 0.0, 0.0],
            contacts_cell_m: Vec::new(),
            center_px,
            angle_rad,
            approach_depth_m: 0.7,
            position_camera_m: [0.0, 0.0, 0.7],
            orientation_camera_xyzw: [0.0, 0.0, 0.0, 1.0],
        }
    }

    #[test]
    fn ground_truth_as_the_prediction_scores_perfectly_on_generated_frames() {
        let dir = generated_folder("truth", None, (96, 72), 3);
        let data = BinDataset::open(&dir).unwrap();
        let (w, h) = (data.width as usize, data.height as usize);
        let mut tally = PipelineTally::default();
        let mut published = 0;
        for index in 0..3 {
            let labels = data.labels(index).unwrap();
            let mask = data.mask(index).unwrap();
            let instances = dataset_instances(&data, index).unwrap();
            let (fg, bin) = class_sets(&data.class_names, &mask);
            assert!(fg.iter().any(|&f| f) && bin.iter().any(|&b| b));
            // The labelled successful grasps, published with quality 1.
            let grasps: Vec<_> = labels
                .grasps
                .iter()
                .filter(|l| l.success)
                .map(|l| {
                    let gripper = match l.gripper {
                        GripperKind::ParallelJaw => Gripper::ParallelJaw,
                        GripperKind::Suction => Gripper::Suction,
                    };
                    (gripper, l.center_px, l.angle_rad, 1.0f32)
                })
                .collect();
            assert!(!grasps.is_empty(), "frame {index} has successful labels");
            published += grasps.len();
            let truth = FrameTruth {
                width: w,
                height: h,
                foreground: &fg,
                bin: &bin,
                instances: &instances.ids,
                grasps: &labels.grasps,
            };
            let predicted = FramePrediction {
                foreground: &fg,
                bin: &bin,
                instances: &instances.ids,
                grasps: &grasps,
            };
            tally.add(&truth, &predicted, 20);
        }
        let m = tally.finish();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(m.frames, 3);
        assert_eq!((m.foreground_iou, m.bin_iou), (1.0, 1.0));
        assert!(m.instances_true >= 3, "{m:?}");
        assert_eq!(
            (m.instance_recall, m.instance_precision),
            (1.0, 1.0),
            "{m:?}"
        );
        assert_eq!(m.frames_with_object, 3);
        assert_eq!(m.frames_with_grasp, 1.0);
        assert_eq!((m.top1_grasp_success, m.top1_unmatched), (1.0, 0));
        assert_eq!(
            (m.grasps_published, m.grasps_matched),
            (published, published)
        );
        assert!(m.grasp_quality_ece.abs() < 1e-12);
    }

    #[test]
    fn instance_grasp_and_bin_rules_give_known_answers() {
        // 10 x 10 image: truth instance 1 = columns 0..4 (40 px), instance 2 = columns 6..10.
        // Prediction: 7 = columns 0..3 (IoU 30/40 = 0.75, found), 8 = columns 6..7 (IoU 10/40,
        // missed), 9 = a stray at column 5.
        let truth: Vec<u16> = (0..100)
            .map(|i| match i % 10 {
                0..=3 => 1,
                6..=9 => 2,
                _ => 0,
            })
            .collect();
        let predicted: Vec<u16> = (0..100)
            .map(|i| match i % 10 {
                0..=2 => 7,
                6 => 8,
                5 => 9,
                _ => 0,
            })
            .collect();
        assert_eq!(match_instances(&truth, &predicted, 1), (2, 3, 1));
        // Both too small to count: 7 (matched to instance 1) is ignored, 8 and 9 are false.
        assert_eq!(match_instances(&truth, &predicted, 41), (0, 2, 0));
        assert_eq!(match_instances(&truth, &truth, 1), (2, 2, 2));

        // Grasps: the nearest label of the same gripper within 4 px and 20 degrees (mod 180).
        let labels = vec![
            label(
                GripperKind::ParallelJaw,
                [10.0, 10.0],
                0.0f64.to_radians(),
                true,
            ),
            label(
                GripperKind::ParallelJaw,
                [12.0, 10.0],
                90.0f64.to_radians(),
                false,
            ),
            label(GripperKind::Suction, [30.0, 30.0], 0.0, true),
        ];
        let pj = Gripper::ParallelJaw;
        let at = |c, a: f64| match_grasp(&labels, pj, c, a.to_radians()).map(|l| l.success);
        assert_eq!(at([11.0, 10.0], 175.0), Some(true));
        assert_eq!(at([12.5, 10.0], 85.0), Some(false));
        assert_eq!(at([11.0, 10.0], 45.0), None);
        assert_eq!(at([10.0, 14.5], 0.0), None);
        assert_eq!(
            at([30.0, 30.0], 0.0),
            None,
            "a suction label is no parallel-jaw match"
        );
        let suction = match_grasp(&labels, Gripper::Suction, [32.0, 33.0], 1.0);
        assert!(suction.is_some_and(|l| l.success));

        // The bin: a ring of pixels (walls) whose hull holds the floor; a corner is outside.
        let (w, h) = (20usize, 20usize);
        let ring: Vec<bool> = (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                (3..=16).contains(&x)
                    && (3..=16).contains(&y)
                    && (x == 3 || x == 16 || y == 3 || y == 16)
            })
            .collect();
        let hull = pixel_hull(w, h, |i| ring[i]);
        assert_eq!(hull.len(), 4, "{hull:?}");
        assert!(in_hull(&hull, [10, 10]) && in_hull(&hull, [3, 16]));
        assert!(!in_hull(&hull, [1, 1]) && !in_hull(&hull, [17, 10]));

        // One frame through the tally: top grasp unmatched (a failure, counted), the second
        // outside the bin and matched to a failure.
        let fg = vec![false; w * h];
        let ids = vec![0u16; w * h];
        let labels = vec![label(GripperKind::ParallelJaw, [18.0, 18.0], 0.0, false)];
        let grasps = [
            (pj, [10.0, 10.0], 0.0, 0.9f32),
            (pj, [18.2, 18.7], 0.1, 0.8f32),
        ];
        let mut tally = PipelineTally::default();
        tally.add(
            &FrameTruth {
                width: w,
                height: h,
                foreground: &fg,
                bin: &ring,
                instances: &ids,
                grasps: &labels,
            },
            &FramePrediction {
                foreground: &fg,
                bin: &ring,
                instances: &ids,
                grasps: &grasps,
            },
            1,
        );
        let m = tally.finish();
        assert_eq!(
            (m.grasps_published, m.grasps_outside_bin, m.grasps_matched),
            (2, 1, 1)
        );
        assert_eq!((m.top1_grasp_success, m.top1_unmatched), (0.0, 1));
        assert_eq!(m.frames_with_object, 0);
        assert!(
            (m.grasp_quality_ece - 0.8).abs() < 1e-6,
            "{}",
            m.grasp_quality_ece
        );
        assert_eq!(
            m.foreground_iou, 1.0,
            "no foreground anywhere: nothing to get wrong"
        );
    }

    #[test]
    fn the_nodes_parameters_file_is_read_without_ros() {
        let path = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/perception.yaml"
        ));
        let p = PipelineParams::from_file(&path).unwrap();
        assert_eq!(p.segmentation_model, "unet_bin_seg");
        assert_eq!(p.grasp_model, "gqcnn_parallel_jaw");
        assert_eq!(p.grasp_gripper, "both");
        assert_eq!(p.grippers().unwrap(), (true, true));
        assert_eq!(p.grasp_min_quality, 0.5);
        assert!(p.workspace_box().unwrap().is_none());
        let bad = "perception_node:\n  ros__parameters:\n    grasp_gripper: vacuum\n";
        let err = PipelineParams::from_yaml(bad).unwrap_err().to_string();
        assert!(err.contains("grasp_gripper"), "{err}");
        let boxed = "/**:\n  ros__parameters:\n    workspace: [-0.1, -0.1, 0.0, 0.1, 0.1, 1.0]\n    grasp_top_k: 3\n";
        let p = PipelineParams::from_yaml(boxed).unwrap();
        assert!(p.workspace_box().unwrap().is_some());
        assert_eq!(p.infer_options().unwrap().grasp_top_k, 3);
        assert_eq!(
            p.segmentation_model, "unet_bin_seg",
            "missing keys take the node's defaults"
        );
        assert!(PipelineParams::from_yaml("a: 1\n").is_err());
    }

    /// `eval --pipeline config/perception.yaml` end to end on 3 generated frames: every key
    /// there and in range.
    #[test]
    fn evaluating_the_shipped_pipeline_reports_every_metric_in_range() {
        let dir = generated_folder("e2e", Some("bin_picking_single_class.yaml"), (160, 120), 3);
        let params = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/perception.yaml"
        ));
        let m = evaluate_node_pipeline(&params, &dir, Some(DeviceChoice::Cpu)).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let json = serde_json::to_value(&m).unwrap();
        eprintln!("{json}");
        for key in [
            "foreground_iou",
            "bin_iou",
            "instance_recall",
            "instance_precision",
            "frames_with_grasp",
            "top1_grasp_success",
            "grasp_quality_ece",
        ] {
            let v = json[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{key} missing"));
            assert!((0.0..=1.0).contains(&v), "{key} = {v}");
        }
        assert_eq!(json["frames"], 3);
        assert!(json["grasps_outside_bin"].as_u64().is_some());
        assert!(m.foreground_iou > 0.5 && m.bin_iou > 0.5, "{json}");
    }
}
