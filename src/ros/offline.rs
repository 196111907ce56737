//! Offline mode: `perception_node --input-bag IN --output-bag OUT [--params-file F]` runs the
//! node's pipeline on every frame of a rosbag2 (MCAP) bag, in order, without DDS, and writes
//! every output topic to a new bag. The output messages are the live node's
//! ([`OutputMessages`]), serialised with the ROS 2 type support, so for the same frames the
//! two modes publish the same bytes.
//!
//! Frames: each colour image is paired with its depth exactly as the live node pairs them
//! ([`StampPairer`], the same slop and depth timeout), and takes the camera_info of its own
//! stamp, or else the newest one stamped before it. Output messages carry the input image's
//! header and are logged at the input image's log time, so the output bag replays in step
//! with the input. /diagnostics is not written: its latencies would make the bag differ run
//! to run; the summary printed at the end reports them instead.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use r2r::sensor_msgs::msg::{CameraInfo, Image};
use r2r::{ParameterValue, RosParams, WrappedTypesupport};

use super::convert::{intrinsics, stamp_ns};
use super::outputs::{decode_frame, load_pipeline, output_topics, OutputMessages};
use super::params::{NodeConfig, NodeParams, ParamError};
use super::NodeError;
use crate::bag::msg_defs::{full_text_with, installed_definition};
use crate::bag::{BagReader, McapBagWriter, TopicId};
use crate::image::CameraIntrinsics;
use crate::pipeline::InferOptions;
use crate::runtime::StampPairer;

/// Images that may wait for their depth, as in the live node.
const MAX_PENDING_IMAGES: usize = 4;

/// The offline mode's command line.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "perception_node",
    about = "Offline mode: process every frame of a rosbag2 (MCAP) bag without DDS and write every output topic to a new bag"
)]
pub struct OfflineArgs {
    /// Input bag: a rosbag2 folder with metadata.yaml, or an .mcap file.
    #[arg(long)]
    pub input_bag: PathBuf,
    /// Output bag folder to create (must not exist).
    #[arg(long)]
    pub output_bag: PathBuf,
    /// ROS parameters file, as for the live node (config/perception.yaml); mode, QoS and
    /// diagnostics parameters do not apply offline.
    #[arg(long)]
    pub params_file: Option<PathBuf>,
    /// Colour image topic in the input bag.
    #[arg(long, default_value = "/camera/color/image_raw")]
    pub image_topic: String,
    /// Registered depth topic in the input bag ('' for none).
    #[arg(long, default_value = "/camera/aligned_depth_to_color/image_raw")]
    pub depth_topic: String,
    /// CameraInfo topic in the input bag ('' for none).
    #[arg(long, default_value = "/camera/color/camera_info")]
    pub camera_info_topic: String,
    /// Namespace the output topics go under, as the launch file's `namespace` argument.
    #[arg(long, default_value = "")]
    pub namespace: String,
}

/// What an offline run did.
#[derive(Debug, Default)]
pub struct OfflineSummary {
    pub images: usize,
    pub frames_written: usize,
    pub frames_with_depth: usize,
    /// Frames not written, each with its stamp and the reason.
    pub skipped: Vec<(i64, String)>,
    pub messages_written: u64,
    pub inference: Duration,
    pub wall: Duration,
}

/// Runs the offline mode; see the module documentation.
pub fn run_offline(args: &OfflineArgs) -> Result<OfflineSummary, NodeError> {
    let started = Instant::now();
    let (config, params) = offline_config(args.params_file.as_deref())?;
    if args.output_bag.exists() {
        return Err(offline_error(format!(
            "output bag {} already exists: remove it or choose another --output-bag",
            args.output_bag.display()
        )));
    }
    let (pipeline, selected) = load_pipeline(&config)?;
    if let Some(reason) = &selected.fallback_reason {
        eprintln!("perception_node: {reason}; running on the CPU");
    }
    eprintln!(
        "perception_node offline: {} -> {} on {} ({})",
        args.input_bag.display(),
        args.output_bag.display(),
        selected.label,
        pipeline.head_names().join(", ")
    );
    let reader = BagReader::open(&args.input_bag)?;
    let (cameras, first_depth_ns) = scan_inputs(&reader, args)?;

    let mut writer = McapBagWriter::create(&args.output_bag)?;
    let topics = OutputTopics::add(&mut writer, &config, &args.namespace)?;
    let class_names = pipeline.class_names();
    let options = InferOptions {
        overlay: true,
        overlay_alpha: params.overlay_alpha as f32,
        min_instance_px: params.min_instance_px as u32,
        grasp_top_k: params.grasp_top_k as usize,
        grasp_min_quality: params.grasp_min_quality as f32,
        // validate() checked it at start-up and the run-time parameter service at each change.
        workspace: params.workspace_box().unwrap_or(None),
    };
    let mut pairer: StampPairer<(Image, u64), Image> = StampPairer::new(
        config.sync_slop.as_nanos() as i64,
        config.depth_timeout.as_nanos() as i64,
        MAX_PENDING_IMAGES,
    );
    if let Some(stamp) = first_depth_ns {
        pairer.expect_depth_from(stamp);
    }
    let mut summary = OfflineSummary::default();
    let process = |paired: Vec<crate::runtime::Paired<(Image, u64), Image>>,
                   summary: &mut OfflineSummary,
                   writer: &mut McapBagWriter|
     -> Result<(), NodeError> {
        for frame in paired {
            let (image, log_time_ns) = frame.image;
            let camera = cameras
                .range(..=frame.stamp_ns)
                .next_back()
                .and_then(|(_, camera)| *camera);
            let decoded = decode_frame(
                &image,
                frame.depth.as_ref(),
                camera,
                config.max_image_pixels,
            );
            let outputs = match decoded {
                Ok(decoded) => pipeline.infer(&decoded, &options),
                Err(e) => {
                    skip(summary, frame.stamp_ns, e.to_string());
                    continue;
                }
            };
            let outputs = match outputs {
                Ok(outputs) => outputs,
                Err(e) => {
                    skip(summary, frame.stamp_ns, e.to_string());
                    continue;
                }
            };
            summary.inference += outputs.timings.inference;
            let messages = OutputMessages::new(&image.header, &outputs, &config, &class_names);
            topics.write(writer, log_time_ns, &messages)?;
            summary.frames_written += 1;
            summary.frames_with_depth += usize::from(frame.depth.is_some());
        }
        Ok(())
    };

    for message in reader.messages() {
        let message = message?;
        let ready = if message.topic == args.image_topic {
            summary.images += 1;
            match Image::from_serialized_bytes(&message.data) {
                Ok(image) => {
                    let stamp = stamp_ns(&image.header.stamp);
                    pairer.push_image(stamp, (image, message.log_time_ns))
                }
                Err(e) => {
                    skip(
                        &mut summary,
                        message.log_time_ns as i64,
                        format!("image message at log time {} ns does not decode as sensor_msgs/msg/Image: {e}", message.log_time_ns),
                    );
                    continue;
                }
            }
        } else if !args.depth_topic.is_empty() && message.topic == args.depth_topic {
            match Image::from_serialized_bytes(&message.data) {
                Ok(depth) => pairer.push_depth(stamp_ns(&depth.header.stamp), depth),
                Err(e) => {
                    eprintln!(
                        "perception_node offline: depth message at log time {} ns does not decode as sensor_msgs/msg/Image ({e}); its frame goes without depth",
                        message.log_time_ns
                    );
                    continue;
                }
            }
        } else {
            continue;
        };
        process(ready, &mut summary, &mut writer)?;
    }
    process(pairer.flush(), &mut summary, &mut writer)?;
    if summary.images == 0 {
        return Err(offline_error(format!(
            "input bag {} has no messages on {}: name its colour topic with --image-topic",
            args.input_bag.display(),
            args.image_topic
        )));
    }
    summary.messages_written = writer.finish()?;
    summary.wall = started.elapsed();
    Ok(summary)
}

fn skip(summary: &mut OfflineSummary, stamp_ns: i64, reason: String) {
    eprintln!("perception_node offline: skipping frame stamped {stamp_ns} ns: {reason}");
    summary.skipped.push((stamp_ns, reason));
}

fn offline_error(message: String) -> NodeError {
    NodeError::Offline(message)
}

/// Cameras by stamp: each camera_info of the bag by header stamp (`None` for an
/// uncalibrated one).
type Cameras = BTreeMap<i64, Option<CameraIntrinsics>>;

/// A first pass over the bag: its camera_infos and the stamp of its first depth image. Names
/// the bag's topics when the colour topic is missing.
fn scan_inputs(
    reader: &BagReader,
    args: &OfflineArgs,
) -> Result<(Cameras, Option<i64>), NodeError> {
    let mut cameras = BTreeMap::new();
    let mut topics = BTreeSet::new();
    let mut first_depth_ns: Option<i64> = None;
    for message in reader.messages() {
        let message = message?;
        if !topics.contains(&message.topic) {
            topics.insert(message.topic.clone());
        }
        if !args.depth_topic.is_empty() && message.topic == args.depth_topic {
            if let Ok(depth) = Image::from_serialized_bytes(&message.data) {
                let stamp = stamp_ns(&depth.header.stamp);
                first_depth_ns = Some(first_depth_ns.map_or(stamp, |first| first.min(stamp)));
            }
            continue;
        }
        if args.camera_info_topic.is_empty() || message.topic != args.camera_info_topic {
            continue;
        }
        match CameraInfo::from_serialized_bytes(&message.data) {
            Ok(info) => {
                cameras.insert(stamp_ns(&info.header.stamp), intrinsics(&info));
            }
            Err(e) => eprintln!(
                "perception_node offline: camera_info at log time {} ns does not decode ({e}); ignored",
                message.log_time_ns
            ),
        }
    }
    if !topics.contains(&args.image_topic) {
        return Err(offline_error(format!(
            "input bag {} has no topic {}; its topics are {}: name the colour topic with --image-topic",
            args.input_bag.display(),
            args.image_topic,
            topics.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    if cameras.is_empty() {
        eprintln!(
            "perception_node offline: no camera_info on {}: detections have no 3-D centroid and no grasps are sampled",
            args.camera_info_topic
        );
    }
    Ok((cameras, first_depth_ns))
}

/// The parameters file's values for this node (keys `/**`, `perception_node` or
/// `<namespace>/perception_node`), validated as the live node validates them.
fn offline_config(params_file: Option<&Path>) -> Result<(NodeConfig, NodeParams), NodeError> {
    let mut params = NodeParams::default();
    if let Some(path) = params_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            offline_error(format!("cannot read --params-file {}: {e}", path.display()))
        })?;
        for (name, value) in node_parameters(&text).map_err(|problem| {
            offline_error(format!("--params-file {}: {problem}", path.display()))
        })? {
            if NodeParams::unknown_names(std::iter::once(&name)).is_empty() {
                set_parameter(&mut params, &name, &value)?;
            } else {
                return Err(ParamError {
                    name,
                    value: "(given)".into(),
                    problem: "this node has no such parameter".into(),
                    fix: "correct its name or remove it from the parameters file".into(),
                }
                .into());
            }
        }
    }
    Ok((params.validate()?, params))
}

/// `name: value` pairs under `ros__parameters` of every entry of a ROS parameters file that
/// applies to a node named perception_node.
fn node_parameters(text: &str) -> Result<Vec<(String, serde_yaml::Value)>, String> {
    let document: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    let serde_yaml::Value::Mapping(nodes) = document else {
        return Err("expected a mapping of node names to ros__parameters".into());
    };
    let mut pairs = Vec::new();
    for (node, entry) in nodes {
        let node = node.as_str().unwrap_or_default();
        let applies = node == "/**"
            || node.trim_start_matches('/').rsplit('/').next() == Some("perception_node");
        if !applies {
            continue;
        }
        let Some(serde_yaml::Value::Mapping(values)) = entry.get("ros__parameters") else {
            return Err(format!("entry '{node}' has no ros__parameters mapping"));
        };
        for (name, value) in values {
            let name = name
                .as_str()
                .ok_or_else(|| format!("parameter name {name:?} under '{node}' is not a string"))?;
            pairs.push((name.to_string(), value.clone()));
        }
    }
    Ok(pairs)
}

/// Sets one parameter from its YAML value; an integer also sets a floating-point parameter.
fn set_parameter(
    params: &mut NodeParams,
    name: &str,
    value: &serde_yaml::Value,
) -> Result<(), NodeError> {
    if name == "use_sim_time" {
        return Ok(());
    }
    let reject = |problem: String| -> NodeError {
        ParamError {
            name: name.to_string(),
            value: format!("{value:?}"),
            problem,
            fix: "give a value of the parameter's type (see config/perception.yaml)".into(),
        }
        .into()
    };
    let converted = match value {
        serde_yaml::Value::Bool(b) => ParameterValue::Bool(*b),
        serde_yaml::Value::Number(n) if n.is_i64() => {
            ParameterValue::Integer(n.as_i64().unwrap_or_default())
        }
        serde_yaml::Value::Number(n) => ParameterValue::Double(n.as_f64().unwrap_or(f64::NAN)),
        serde_yaml::Value::String(s) => ParameterValue::String(s.clone()),
        other => return Err(reject(format!("unsupported value {other:?}"))),
    };
    match params.set_parameter(name, &converted) {
        Ok(()) => Ok(()),
        Err(first) => match converted {
            ParameterValue::Integer(i) => params
                .set_parameter(name, &ParameterValue::Double(i as f64))
                .map_err(|_| reject(first.to_string())),
            _ => Err(reject(first.to_string())),
        },
    }
}

/// `message` in CDR, with every alignment padding byte zero. Fast CDR skips padding without
/// writing it, and r2r serialises into one reused buffer per thread, so padding would carry
/// whatever an earlier message left there and the same message could give different bytes.
/// Serialising a zero-filled byte array of at least the message's size first (a
/// std_msgs/UInt8MultiArray with no dimensions: no padding of its own) clears that buffer.
fn deterministic_cdr<T: WrappedTypesupport>(message: &T) -> r2r::Result<Vec<u8>> {
    let size = message.to_serialized_bytes()?.len();
    let zeros = r2r::std_msgs::msg::UInt8MultiArray {
        data: vec![0; size],
        ..Default::default()
    };
    zeros.to_serialized_bytes()?;
    message.to_serialized_bytes()
}

/// The output bag's topics, in the order each frame's messages are written.
struct OutputTopics {
    ids: BTreeMap<&'static str, TopicId>,
}

impl OutputTopics {
    fn add(
        writer: &mut McapBagWriter,
        config: &NodeConfig,
        namespace: &str,
    ) -> Result<Self, NodeError> {
        let namespace = namespace.trim_matches('/');
        let mut ids = BTreeMap::new();
        for (name, type_name) in output_topics(config) {
            let definition = full_text_with(type_name, &installed_definition)
                .map_err(|e| offline_error(e.to_string()))?;
            let absolute = if namespace.is_empty() {
                format!("/{name}")
            } else {
                format!("/{namespace}/{name}")
            };
            ids.insert(name, writer.add_topic(&absolute, type_name, &definition)?);
        }
        Ok(Self { ids })
    }

    fn write(
        &self,
        writer: &mut McapBagWriter,
        log_time_ns: u64,
        messages: &OutputMessages,
    ) -> Result<(), NodeError> {
        let mut put = |name: &str, bytes: r2r::Result<Vec<u8>>| -> Result<(), NodeError> {
            let id = self.ids[name];
            let bytes =
                bytes.map_err(|e| offline_error(format!("cannot serialise {name}: {e}")))?;
            writer.write(id, log_time_ns, &bytes)?;
            Ok(())
        };
        put("segmentation/mask", deterministic_cdr(&messages.mask))?;
        if let Some(overlay) = &messages.overlay {
            put("segmentation/overlay", deterministic_cdr(overlay))?;
        }
        put(
            "segmentation/instances",
            deterministic_cdr(&messages.instances),
        )?;
        put("detections", deterministic_cdr(&messages.detections))?;
        if let Some(depth) = &messages.depth {
            put("depth/estimated", deterministic_cdr(depth))?;
        }
        if let Some(pose) = &messages.pose {
            put("camera_pose", deterministic_cdr(pose))?;
        }
        if let Some((grasps, poses, markers)) = &messages.grasps {
            put("grasps", deterministic_cdr(grasps))?;
            put("grasps/poses", deterministic_cdr(poses))?;
            put("grasps/markers", deterministic_cdr(markers))?;
        }
        Ok(())
    }
}
