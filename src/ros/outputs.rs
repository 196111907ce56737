//! What the node makes of one frame: the pipeline built from the configuration, and the output
//! messages of one inference. The live node publishes these messages; the offline mode writes
//! the same messages to a bag, so the two agree byte for byte.

use r2r::geometry_msgs::msg::{PoseArray, PoseWithCovarianceStamped};
use r2r::perception_msgs::msg::{Detection2DArray, GraspArray};
use r2r::sensor_msgs::msg::Image;
use r2r::std_msgs::msg::Header;
use r2r::visualization_msgs::msg::MarkerArray;

use super::convert::{
    camera_pose_message, depth32_message, detections_message, grasp_markers_message,
    grasp_poses_message, grasps_message, mono16_message, mono8_message, raw_image, rgb8_message,
};
use super::params::NodeConfig;
use super::NodeError;
use crate::image::CameraIntrinsics;
use crate::models::ModelFolder;
use crate::pipeline::{select_device, Frame, Outputs, Pipeline, SelectedDevice};
use crate::postprocess::{GraspSampling, SuctionCup};
use crate::preprocess::{check_depth_matches, decode_color, decode_depth, InputError};

/// Output topics (relative names) and their types; a topic is there when its head is on.
pub fn output_topics(config: &NodeConfig) -> Vec<(&'static str, &'static str)> {
    let mut topics = vec![
        ("segmentation/mask", "sensor_msgs/msg/Image"),
        ("segmentation/overlay", "sensor_msgs/msg/Image"),
        ("segmentation/instances", "sensor_msgs/msg/Image"),
        ("detections", "perception_msgs/msg/Detection2DArray"),
    ];
    if config.depth_model_dir.is_some() {
        topics.push(("depth/estimated", "sensor_msgs/msg/Image"));
    }
    if config.pose_model_dir.is_some() {
        topics.push(("camera_pose", "geometry_msgs/msg/PoseWithCovarianceStamped"));
    }
    if config.grasp_head() {
        topics.push(("grasps", "perception_msgs/msg/GraspArray"));
        topics.push(("grasps/poses", "geometry_msgs/msg/PoseArray"));
        topics.push(("grasps/markers", "visualization_msgs/msg/MarkerArray"));
    }
    topics
}

/// Opens the device and loads the segmentation model and every head the configuration turns
/// on. A missing or broken model is an error naming the file and the fix.
pub fn load_pipeline(config: &NodeConfig) -> Result<(Pipeline, SelectedDevice), NodeError> {
    let selected = select_device(config.device);
    let mut pipeline = Pipeline::new(
        &ModelFolder::new(&config.segmentation_model_dir),
        selected.device.clone(),
    )?;
    if let Some(dir) = &config.depth_model_dir {
        pipeline = pipeline.with_depth(&ModelFolder::new(dir))?;
    }
    if let Some(dir) = &config.pose_model_dir {
        pipeline = pipeline.with_pose(&ModelFolder::new(dir))?;
    }
    if let Some(dir) = &config.grasp_model_dir {
        let sampling = GraspSampling {
            finger_depth_m: config.grasp_finger_depth_m,
            ..Default::default()
        };
        pipeline = pipeline.with_grasp(&ModelFolder::new(dir), sampling)?;
    }
    if config.suction {
        pipeline = pipeline.with_suction(SuctionCup::default());
    }
    Ok((pipeline, selected))
}

/// The pipeline's input from a colour message, its paired depth message and the camera.
pub fn decode_frame(
    image: &Image,
    depth: Option<&Image>,
    camera: Option<CameraIntrinsics>,
    max_pixels: u64,
) -> Result<Frame, InputError> {
    let rgb = decode_color(&raw_image(image), max_pixels)?;
    let depth = match depth {
        Some(msg) => {
            let depth = decode_depth(&raw_image(msg), max_pixels)?;
            check_depth_matches(&depth, &rgb)?;
            Some(depth)
        }
        None => None,
    };
    Ok(Frame { rgb, depth, camera })
}

/// The messages of one frame's outputs, every header a copy of the input image's.
pub struct OutputMessages {
    pub mask: Image,
    pub overlay: Option<Image>,
    pub instances: Image,
    pub detections: Detection2DArray,
    pub depth: Option<Image>,
    pub pose: Option<PoseWithCovarianceStamped>,
    /// The ranked grasps as GraspArray, PoseArray and MarkerArray, when the grasp head is on.
    pub grasps: Option<(GraspArray, PoseArray, MarkerArray)>,
}

impl OutputMessages {
    pub fn new(
        header: &Header,
        outputs: &Outputs,
        config: &NodeConfig,
        class_names: &[String],
    ) -> Self {
        Self {
            mask: mono8_message(header, &outputs.mask),
            overlay: outputs
                .overlay
                .as_ref()
                .map(|overlay| rgb8_message(header, overlay)),
            instances: mono16_message(header, &outputs.instances),
            detections: detections_message(header, &outputs.detections, class_names),
            depth: outputs
                .depth_estimate
                .as_ref()
                .map(|depth| depth32_message(header, depth)),
            pose: outputs
                .camera_pose
                .as_ref()
                .map(|pose| camera_pose_message(header, &config.pose_frame_id, pose)),
            grasps: config.grasp_head().then(|| {
                (
                    grasps_message(header, &outputs.grasps),
                    grasp_poses_message(header, &outputs.grasps),
                    grasp_markers_message(header, &outputs.grasps),
                )
            }),
        }
    }
}
