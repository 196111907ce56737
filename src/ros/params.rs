//! The node's ROS parameters: declared with descriptions, validated once at start-up into an
//! immutable config, and which of them change at run time.

use std::path::PathBuf;
use std::time::Duration;

use r2r::{ParameterValue, RosParams};
use thiserror::Error;

use crate::pipeline::DeviceChoice;
use crate::postprocess::Workspace;
use crate::runtime::QueueMode;

/// The node's ROS parameters (config/perception.yaml). Doc comments become the text of
/// `ros2 param describe`. Only those in [`RUNTIME_PARAMETERS`] change at run time; the rest are
/// read once at start-up.
#[derive(RosParams, Clone, Debug, PartialEq)]
pub struct NodeParams {
    /// Frame hand-off: 'live' processes only the newest frame (stale frames dropped and counted), 'every_frame' processes all frames in order (replay). Start-up only.
    pub mode: String,
    /// every_frame mode: frames that may wait for the inference worker, 1..10000. Start-up only.
    pub queue_size: i64,
    /// Input QoS: false = sensor data (best effort, keep last 5), true = reliable (keep last 10). Start-up only.
    pub reliable_qos: bool,
    /// Largest stamp difference between an image and its depth, seconds, 0..1. Start-up only.
    pub sync_slop_s: f64,
    /// An image waits for depth only if depth arrived within this many seconds of its stamp, 0..60. Start-up only.
    pub depth_timeout_s: f64,
    /// Inference device: auto (CUDA when present, else CPU), cpu, or cuda:N. Start-up only.
    pub device: String,
    /// Folder holding the model folders (each with model.yaml and model.safetensors). Start-up only.
    pub models_dir: String,
    /// Segmentation model folder name inside models_dir. Start-up only.
    pub segmentation_model: String,
    /// Depth-estimation model folder inside models_dir; empty turns the depth head (depth/estimated) off. Start-up only.
    pub depth_model: String,
    /// Camera-pose model folder inside models_dir (a PoseNet trained for this work cell); empty turns the pose head (camera_pose) off. Start-up only.
    pub pose_model: String,
    /// Frame of the work cell that camera_pose is expressed in. Start-up only.
    pub pose_frame_id: String,
    /// Grasp-quality model folder inside models_dir (a GQ-CNN for the parallel-jaw gripper); empty turns the grasp head (grasps, grasps/poses, grasps/markers) off. Start-up only.
    pub grasp_model: String,
    /// Grippers to plan for: 'parallel_jaw' (scored by grasp_model), 'suction' (scored by the suction seal model) or 'both' (ranked together by quality). Start-up only.
    pub grasp_gripper: String,
    /// How far below the grasped surface the jaw centre goes, metres, 0..0.2 (the gripper's finger depth). Start-up only.
    pub grasp_finger_depth_m: f64,
    /// Most grasps published per frame, 1..1000. Changeable at run time.
    pub grasp_top_k: i64,
    /// Least predicted success probability of a published grasp, 0..1. Changeable at run time.
    pub grasp_min_quality: f64,
    /// Box a grasp centre must lie in, camera optical frame, metres: [x_min, y_min, z_min, x_max, y_max, z_max]; empty = no box (grasps are still kept to the bin's interior when a bin is seen, and never on the background). Changeable at run time.
    pub workspace: DoubleArray,
    /// Weight of the class colour in segmentation/overlay, 0..1. Changeable at run time.
    pub overlay_alpha: f64,
    /// Connected components of an object class smaller than this many pixels are not instances or detections, 1..1000000. Changeable at run time.
    pub min_instance_px: i64,
    /// Largest accepted image, in pixels (width x height), 1..100000000. Start-up only.
    pub max_image_pixels: i64,
    /// Period of /diagnostics, seconds, 0.05..60. Start-up only.
    pub diagnostics_period_s: f64,
    /// Least time between two log lines about the same input problem, seconds, 0..3600. Start-up only.
    pub log_throttle_s: f64,
}

/// A parameter holding a list of doubles (r2r's derive has no `Vec<f64>` leaf).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DoubleArray(pub Vec<f64>);

impl RosParams for DoubleArray {
    fn register_parameters(
        &mut self,
        prefix: &str,
        param: Option<r2r::Parameter>,
        params: &mut r2r::indexmap::IndexMap<String, r2r::Parameter>,
    ) -> r2r::Result<()> {
        // As r2r's own leaves do: a value from the command line or launch file wins, and the
        // parameter is re-inserted with its description in declaration order.
        if let Some(given) = params.shift_remove(prefix) {
            self.set_parameter("", &given.value)
                .map_err(|e| e.update_param_name(prefix))?;
        }
        let mut param = param.unwrap_or_else(|| r2r::Parameter::new(ParameterValue::NotSet));
        param.value = ParameterValue::DoubleArray(self.0.clone());
        params.insert(prefix.to_owned(), param);
        Ok(())
    }

    fn get_parameter(&mut self, param_name: &str) -> r2r::Result<ParameterValue> {
        match param_name {
            "" => Ok(ParameterValue::DoubleArray(self.0.clone())),
            _ => Err(r2r::Error::InvalidParameterName {
                name: param_name.to_owned(),
            }),
        }
    }

    fn set_parameter(&mut self, param_name: &str, param_val: &ParameterValue) -> r2r::Result<()> {
        self.check_parameter(param_name, param_val)?;
        match param_val {
            ParameterValue::DoubleArray(values) => self.0 = values.clone(),
            // An empty list from a parameters file or the command line has no element type.
            _ => self.0.clear(),
        }
        Ok(())
    }

    fn check_parameter(&self, param_name: &str, param_val: &ParameterValue) -> r2r::Result<()> {
        if !param_name.is_empty() {
            return Err(r2r::Error::InvalidParameterName {
                name: param_name.to_owned(),
            });
        }
        match param_val {
            ParameterValue::DoubleArray(_) => Ok(()),
            // `-p workspace:=[]` arrives without a type.
            ParameterValue::NotSet => Ok(()),
            ParameterValue::StringArray(v) if v.is_empty() => Ok(()),
            ParameterValue::IntegerArray(v) if v.is_empty() => Ok(()),
            ParameterValue::BoolArray(v) if v.is_empty() => Ok(()),
            _ => Err(r2r::Error::InvalidParameterType {
                name: String::new(),
                ty: "ParameterValue::DoubleArray",
            }),
        }
    }
}

/// Parameters that `ros2 param set` may change while the node runs.
pub const RUNTIME_PARAMETERS: &[&str] = &[
    "overlay_alpha",
    "min_instance_px",
    "grasp_top_k",
    "grasp_min_quality",
    "workspace",
];

/// Parameters that the ROS client library itself owns.
const CLIENT_LIBRARY_PARAMETERS: &[&str] = &["use_sim_time"];

impl Default for NodeParams {
    fn default() -> Self {
        Self {
            mode: "live".into(),
            queue_size: 64,
            reliable_qos: false,
            sync_slop_s: 0.02,
            depth_timeout_s: 1.0,
            device: "auto".into(),
            models_dir: "models".into(),
            segmentation_model: "unet_bin_seg".into(),
            depth_model: "depth_bin".into(),
            pose_model: String::new(),
            pose_frame_id: "cell".into(),
            grasp_model: "gqcnn_parallel_jaw".into(),
            grasp_gripper: "parallel_jaw".into(),
            grasp_finger_depth_m: 0.03,
            grasp_top_k: 10,
            grasp_min_quality: 0.5,
            workspace: DoubleArray::default(),
            overlay_alpha: 0.5,
            min_instance_px: 50,
            max_image_pixels: 4096 * 4096,
            diagnostics_period_s: 1.0,
            log_throttle_s: 5.0,
        }
    }
}

/// A rejected parameter value: which one, what was wrong, how to fix it.
#[derive(Debug, Error, Clone, PartialEq)]
#[error("parameter '{name}' = {value}: {problem}; {fix}")]
pub struct ParamError {
    pub name: String,
    pub value: String,
    pub problem: String,
    pub fix: String,
}

/// Validated, typed start-up configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeConfig {
    pub mode: QueueMode,
    pub reliable_qos: bool,
    pub sync_slop: Duration,
    pub depth_timeout: Duration,
    pub device: DeviceChoice,
    pub segmentation_model_dir: PathBuf,
    pub depth_model_dir: Option<PathBuf>,
    pub pose_model_dir: Option<PathBuf>,
    pub pose_frame_id: String,
    pub grasp_model_dir: Option<PathBuf>,
    /// Suction grasps on (grasp_gripper 'suction' or 'both').
    pub suction: bool,
    pub grasp_finger_depth_m: f64,
    pub max_image_pixels: u64,
    pub diagnostics_period: Duration,
    pub log_throttle: Duration,
}

fn reject(name: &str, value: impl std::fmt::Display, problem: impl Into<String>) -> ParamError {
    ParamError {
        name: name.into(),
        value: value.to_string(),
        problem: problem.into(),
        fix: format!("fix it in the parameters file (config/perception.yaml) or with `--ros-args -p {name}:=<value>`"),
    }
}

fn in_range_f64(name: &str, value: f64, min: f64, max: f64) -> Result<f64, ParamError> {
    if value.is_finite() && (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(reject(name, value, format!("must lie in [{min}, {max}]")))
    }
}

fn in_range_i64(name: &str, value: i64, min: i64, max: i64) -> Result<i64, ParamError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(reject(name, value, format!("must lie in [{min}, {max}]")))
    }
}

impl NodeConfig {
    /// Whether the grasp topics exist: a parallel-jaw grasp model or suction is on.
    pub fn grasp_head(&self) -> bool {
        self.grasp_model_dir.is_some() || self.suction
    }
}

impl NodeParams {
    /// Checks every value and returns the typed configuration, or the first problem found.
    pub fn validate(&self) -> Result<NodeConfig, ParamError> {
        let queue_size = in_range_i64("queue_size", self.queue_size, 1, 10_000)? as usize;
        let mode = match self.mode.as_str() {
            "live" => QueueMode::Live,
            "every_frame" => QueueMode::EveryFrame {
                capacity: queue_size,
            },
            other => {
                return Err(reject(
                    "mode",
                    format!("'{other}'"),
                    "must be 'live' or 'every_frame'",
                ))
            }
        };
        let device = self
            .device
            .parse()
            .map_err(|e: String| reject("device", format!("'{}'", self.device), e))?;
        if self.segmentation_model.is_empty() {
            return Err(reject(
                "segmentation_model",
                "''",
                "name a folder inside models_dir, e.g. unet_bin_seg",
            ));
        }
        if self.models_dir.is_empty() {
            return Err(reject(
                "models_dir",
                "''",
                "give the folder holding the model folders, e.g. models",
            ));
        }
        in_range_f64("overlay_alpha", self.overlay_alpha, 0.0, 1.0)?;
        in_range_i64("min_instance_px", self.min_instance_px, 1, 1_000_000)?;
        in_range_i64("grasp_top_k", self.grasp_top_k, 1, 1000)?;
        in_range_f64("grasp_min_quality", self.grasp_min_quality, 0.0, 1.0)?;
        self.workspace_box()?;
        let head =
            |name: &str| (!name.is_empty()).then(|| PathBuf::from(&self.models_dir).join(name));
        let (parallel_jaw, suction) = match self.grasp_gripper.as_str() {
            "parallel_jaw" => (true, false),
            "suction" => (false, true),
            "both" => (true, true),
            other => {
                return Err(reject(
                    "grasp_gripper",
                    format!("'{other}'"),
                    "must be 'parallel_jaw', 'suction' or 'both'",
                ))
            }
        };
        if self.grasp_gripper == "both" && self.grasp_model.is_empty() {
            return Err(reject(
                "grasp_model",
                "''",
                "grasp_gripper 'both' needs a parallel-jaw grasp model, e.g. gqcnn_parallel_jaw (or set grasp_gripper to 'suction')",
            ));
        }
        let grasp_model_dir = if parallel_jaw {
            head(&self.grasp_model)
        } else {
            None
        };
        if !self.pose_model.is_empty() && self.pose_frame_id.trim().is_empty() {
            return Err(reject(
                "pose_frame_id",
                "''",
                "the pose head needs the work cell's frame name, e.g. cell",
            ));
        }
        Ok(NodeConfig {
            mode,
            reliable_qos: self.reliable_qos,
            sync_slop: Duration::from_secs_f64(in_range_f64(
                "sync_slop_s",
                self.sync_slop_s,
                0.0,
                1.0,
            )?),
            depth_timeout: Duration::from_secs_f64(in_range_f64(
                "depth_timeout_s",
                self.depth_timeout_s,
                0.0,
                60.0,
            )?),
            device,
            segmentation_model_dir: PathBuf::from(&self.models_dir).join(&self.segmentation_model),
            depth_model_dir: head(&self.depth_model),
            pose_model_dir: head(&self.pose_model),
            pose_frame_id: self.pose_frame_id.clone(),
            grasp_model_dir,
            suction,
            grasp_finger_depth_m: in_range_f64(
                "grasp_finger_depth_m",
                self.grasp_finger_depth_m,
                0.0,
                0.2,
            )?,
            max_image_pixels: in_range_i64(
                "max_image_pixels",
                self.max_image_pixels,
                1,
                100_000_000,
            )? as u64,
            diagnostics_period: Duration::from_secs_f64(in_range_f64(
                "diagnostics_period_s",
                self.diagnostics_period_s,
                0.05,
                60.0,
            )?),
            log_throttle: Duration::from_secs_f64(in_range_f64(
                "log_throttle_s",
                self.log_throttle_s,
                0.0,
                3600.0,
            )?),
        })
    }

    /// The `workspace` box, `None` when off, or what is wrong with it.
    pub fn workspace_box(&self) -> Result<Option<Workspace>, ParamError> {
        Workspace::from_bounds(&self.workspace.0)
            .map_err(|problem| reject("workspace", format!("{:?}", self.workspace.0), problem))
    }

    /// Names given in the parameters file or on the command line that this node does not have
    /// (usually a typo, which would otherwise be silently ignored).
    pub fn unknown_names<'a>(names: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        let mut known = NodeParams::default();
        names
            .into_iter()
            .filter(|n| {
                !CLIENT_LIBRARY_PARAMETERS.contains(&n.as_str()) && known.get_parameter(n).is_err()
            })
            .cloned()
            .collect()
    }
}

/// [`NodeParams`] as the run-time parameter services see them: changes to start-up-only
/// parameters and out-of-range values are refused with the reason, which `ros2 param set`
/// prints; accepted values are visible to the worker at its next frame.
pub struct RuntimeParams(pub NodeParams);

impl RosParams for RuntimeParams {
    fn register_parameters(
        &mut self,
        prefix: &str,
        param: Option<r2r::Parameter>,
        params: &mut r2r::indexmap::IndexMap<String, r2r::Parameter>,
    ) -> r2r::Result<()> {
        self.0.register_parameters(prefix, param, params)
    }

    fn get_parameter(&mut self, param_name: &str) -> r2r::Result<ParameterValue> {
        self.0.get_parameter(param_name)
    }

    fn set_parameter(&mut self, param_name: &str, param_val: &ParameterValue) -> r2r::Result<()> {
        self.check_parameter(param_name, param_val)?;
        self.0.set_parameter(param_name, param_val)
    }

    fn check_parameter(&self, param_name: &str, param_val: &ParameterValue) -> r2r::Result<()> {
        let refuse = |msg: String| r2r::Error::ParameterValueConv {
            name: param_name.to_owned(),
            msg,
        };
        if !RUNTIME_PARAMETERS.contains(&param_name) {
            return Err(refuse(format!(
                "read only at start-up; change it in the parameters file and restart the node (run-time: {})",
                RUNTIME_PARAMETERS.join(", ")
            )));
        }
        let mut candidate = self.0.clone();
        candidate.set_parameter(param_name, param_val)?;
        candidate
            .validate()
            .map(|_| ())
            .map_err(|e| refuse(e.problem))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = NodeParams::default().validate().unwrap();
        assert_eq!(config.mode, QueueMode::Live);
        assert_eq!(
            config.segmentation_model_dir,
            PathBuf::from("models/unet_bin_seg")
        );
    }

    #[test]
    fn grasp_gripper_chooses_the_grasp_heads() {
        let with = |gripper: &str, model: &str| {
            let config = NodeParams {
                grasp_gripper: gripper.into(),
                grasp_model: model.into(),
                ..NodeParams::default()
            }
            .validate()
            .unwrap();
            (
                config.grasp_model_dir.is_some(),
                config.suction,
                config.grasp_head(),
            )
        };
        assert_eq!(
            with("parallel_jaw", "gqcnn_parallel_jaw"),
            (true, false, true)
        );
        assert_eq!(with("parallel_jaw", ""), (false, false, false));
        assert_eq!(with("suction", "gqcnn_parallel_jaw"), (false, true, true));
        assert_eq!(with("suction", ""), (false, true, true));
        assert_eq!(with("both", "gqcnn_parallel_jaw"), (true, true, true));
    }

    #[test]
    fn each_bad_value_is_rejected_with_its_name_and_a_fix() {
        let cases: Vec<(&str, Box<dyn Fn(&mut NodeParams)>)> = vec![
            ("mode", Box::new(|p| p.mode = "fastest".into())),
            ("queue_size", Box::new(|p| p.queue_size = 0)),
            ("sync_slop_s", Box::new(|p| p.sync_slop_s = -0.1)),
            ("sync_slop_s", Box::new(|p| p.sync_slop_s = f64::NAN)),
            ("depth_timeout_s", Box::new(|p| p.depth_timeout_s = 100.0)),
            ("device", Box::new(|p| p.device = "gpu0".into())),
            (
                "segmentation_model",
                Box::new(|p| p.segmentation_model = String::new()),
            ),
            ("models_dir", Box::new(|p| p.models_dir = String::new())),
            ("overlay_alpha", Box::new(|p| p.overlay_alpha = 1.5)),
            ("min_instance_px", Box::new(|p| p.min_instance_px = 0)),
            ("grasp_top_k", Box::new(|p| p.grasp_top_k = 0)),
            ("grasp_min_quality", Box::new(|p| p.grasp_min_quality = 1.5)),
            (
                "workspace",
                Box::new(|p| p.workspace = DoubleArray(vec![-0.3, -0.2, 0.5])),
            ),
            (
                "workspace",
                Box::new(|p| p.workspace = DoubleArray(vec![-0.3, -0.2, 0.5, 0.3, 0.2, f64::NAN])),
            ),
            (
                "workspace",
                Box::new(|p| p.workspace = DoubleArray(vec![0.3, -0.2, 0.5, -0.3, 0.2, 1.0])),
            ),
            (
                "workspace",
                Box::new(|p| p.workspace = DoubleArray(vec![-0.3, -0.2, 0.5, 0.3, 0.2, 0.5])),
            ),
            (
                "grasp_finger_depth_m",
                Box::new(|p| p.grasp_finger_depth_m = -0.1),
            ),
            (
                "grasp_gripper",
                Box::new(|p| p.grasp_gripper = "vacuum".into()),
            ),
            (
                "grasp_model",
                Box::new(|p| {
                    p.grasp_gripper = "both".into();
                    p.grasp_model = String::new();
                }),
            ),
            ("max_image_pixels", Box::new(|p| p.max_image_pixels = 0)),
            (
                "diagnostics_period_s",
                Box::new(|p| p.diagnostics_period_s = 0.0),
            ),
            ("log_throttle_s", Box::new(|p| p.log_throttle_s = -1.0)),
        ];
        for (name, corrupt) in cases {
            let mut p = NodeParams::default();
            corrupt(&mut p);
            let err = p.validate().unwrap_err();
            assert_eq!(err.name, name);
            let text = err.to_string();
            assert!(text.contains(&format!("-p {name}:=")), "{text}");
        }
    }

    #[test]
    fn unknown_names_are_reported() {
        let names = [
            "mode".to_string(),
            "use_sim_time".into(),
            "overlay_alfa".into(),
        ];
        assert_eq!(
            NodeParams::unknown_names(&names),
            vec!["overlay_alfa".to_string()]
        );
    }

    #[test]
    fn run_time_changes_are_checked() {
        let mut p = RuntimeParams(NodeParams::default());
        assert!(p
            .set_parameter("overlay_alpha", &ParameterValue::Double(0.25))
            .is_ok());
        assert_eq!(p.0.overlay_alpha, 0.25);
        let err = p
            .set_parameter("overlay_alpha", &ParameterValue::Double(2.0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("[0, 1]"), "{err}");
        assert_eq!(p.0.overlay_alpha, 0.25);
        let err = p
            .set_parameter("device", &ParameterValue::String("cpu".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("start-up"), "{err}");
        assert!(p
            .set_parameter("overlay_alpha", &ParameterValue::String("x".into()))
            .is_err());
    }

    /// A `workspace` from the parameters file or command line reaches the config; an empty
    /// list (which rcl passes untyped or as any array) means off.
    #[test]
    fn workspace_is_read_from_the_given_parameters() {
        let given = |value: ParameterValue| {
            let mut params = r2r::indexmap::IndexMap::new();
            params.insert("workspace".to_string(), r2r::Parameter::new(value));
            let mut p = NodeParams::default();
            p.register_parameters("", None, &mut params).unwrap();
            assert!(matches!(
                params["workspace"].value,
                ParameterValue::DoubleArray(_)
            ));
            p.workspace.0
        };
        let bounds = vec![-0.3, -0.2, 0.5, 0.3, 0.2, 1.0];
        assert_eq!(given(ParameterValue::DoubleArray(bounds.clone())), bounds);
        assert!(given(ParameterValue::StringArray(Vec::new())).is_empty());
        assert!(given(ParameterValue::NotSet).is_empty());
        let mut params = r2r::indexmap::IndexMap::new();
        params.insert(
            "workspace".to_string(),
            r2r::Parameter::new(ParameterValue::String("off".into())),
        );
        assert!(NodeParams::default()
            .register_parameters("", None, &mut params)
            .is_err());
    }

    #[test]
    fn workspace_changes_at_run_time_and_is_checked() {
        let mut p = RuntimeParams(NodeParams::default());
        assert_eq!(p.0.workspace_box(), Ok(None));
        let bounds = vec![-0.3, -0.2, 0.5, 0.3, 0.2, 1.0];
        assert!(p
            .set_parameter("workspace", &ParameterValue::DoubleArray(bounds.clone()))
            .is_ok());
        let workspace = p.0.workspace_box().unwrap().unwrap();
        assert_eq!(
            (workspace.min_m, workspace.max_m),
            ([-0.3, -0.2, 0.5], [0.3, 0.2, 1.0])
        );
        let err = p
            .set_parameter(
                "workspace",
                &ParameterValue::DoubleArray(vec![1.0, 0.0, 0.0, 0.0, 1.0, 1.0]),
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("x_min"), "{err}");
        assert_eq!(p.0.workspace.0, bounds);
        assert!(p
            .set_parameter("workspace", &ParameterValue::DoubleArray(Vec::new()))
            .is_ok());
        assert_eq!(p.0.workspace_box(), Ok(None));
    }
}
