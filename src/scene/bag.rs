//! rosbag2 writer in the MCAP storage format: synthetic camera frames with their ground truth,
//! laid out as `ros2 bag record -s mcap` would have recorded them from a camera driver and a
//! simulator, so `ros2 bag play` feeds them to the node under its default topic names.
//!
//! A bag is a folder holding `<folder name>_0.mcap` and `metadata.yaml`. The MCAP file uses the
//! `ros2` profile, `ros2msg` schemas and CDR messages, in LZ4-compressed chunks (LZ4 rather than
//! rosbag2's usual zstd: every reader here, rosbags included, has LZ4).

#[path = "cdr.rs"]
mod cdr;

use std::path::Path;

use thiserror::Error;

use crate::bag::{msg_defs, McapBagWriter, TopicId, UnknownMessageType, WriteError};
use cdr::{LengthOverflow, PixelData, Stamp};

/// How the frames of a bag are stamped and which frames they are expressed in.
#[derive(Clone, Debug, PartialEq)]
pub struct BagOptions {
    /// Frames per second of the header stamps and log times.
    pub rate_hz: f64,
    /// Stamp of the first frame, nanoseconds since the epoch.
    pub start_time_ns: u64,
    /// frame_id of camera images/camera_info/grasps (the camera optical frame).
    pub camera_frame_id: String,
    /// frame_id of the ground-truth camera pose (the work-cell frame).
    pub cell_frame_id: String,
}

impl Default for BagOptions {
    /// 10 Hz from 2023-11-14 22:13:20 UTC, in the frames a RealSense driver and the cell use.
    fn default() -> Self {
        Self {
            rate_hz: 10.0,
            start_time_ns: 1_700_000_000 * NANOS_PER_SECOND,
            camera_frame_id: "camera_color_optical_frame".into(),
            cell_frame_id: "work_cell".into(),
        }
    }
}

/// One ground-truth grasp, as perception_msgs/msg/Grasp carries it (see that file for frames
/// and conventions): pose in the camera optical frame, image quantities in pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BagGrasp {
    pub gripper_type: u8,
    pub position_m: [f64; 3],
    pub orientation_xyzw: [f64; 4],
    pub quality: f32,
    pub width_m: f32,
    pub center_x_px: f32,
    pub center_y_px: f32,
    pub angle_rad: f32,
    pub approach_depth_m: f32,
    pub instance_id: u16,
}

/// One rendered camera frame and its ground truth. Buffers are row-major without row padding.
///
/// # Shapes
/// `rgb`: `height * width * 3`; `depth_mm`, `class_mask`, `instance_mask`: `height * width`.
#[derive(Clone, Copy, Debug)]
pub struct BagFrame<'a> {
    pub width: u32,
    pub height: u32,
    /// rgb8.
    pub rgb: &'a [u8],
    /// 16UC1, millimetres along the optical axis, 0 = no reading.
    pub depth_mm: &'a [u16],
    /// mono8 class ids.
    pub class_mask: &'a [u8],
    /// mono16 instance ids, 0 = none.
    pub instance_mask: &'a [u16],
    /// fx, fy, cx, cy, pixels.
    pub intrinsics: [f64; 4],
    /// Where the camera optical frame is in the cell frame.
    pub cell_from_camera_translation_m: [f64; 3],
    pub cell_from_camera_rotation_xyzw: [f64; 4],
    pub grasps: &'a [BagGrasp],
}

/// Why a bag cannot be written. A rejected frame ([`BagError::FrameSize`],
/// [`BagError::EmptyFrame`], [`BagError::StampOutOfRange`], [`BagError::Cdr`]) leaves the bag as
/// it was, so the caller may skip it and go on; after any other error the bag is incomplete.
#[derive(Debug, Error)]
pub enum BagError {
    #[error("bag rate_hz = {rate_hz}: it must be a finite number of frames per second above 0")]
    InvalidRate { rate_hz: f64 },
    #[error("bag {field} = {frame_id:?}: a frame_id must be non-empty and hold no NUL character")]
    InvalidFrameId {
        field: &'static str,
        frame_id: String,
    },
    #[error("frame {index}: stamp {stamp_ns} ns is past 2038-01-19 03:14:07 UTC, the last second builtin_interfaces/Time can hold: lower start_time_ns")]
    StampOutOfRange { index: usize, stamp_ns: u128 },
    #[error("frame is {width}x{height} pixels: a frame needs at least one pixel")]
    EmptyFrame { width: u32, height: u32 },
    #[error("BagFrame.{field} holds {len} values, but a {width}x{height} frame needs {expected} (row-major, no row padding)")]
    FrameSize {
        field: &'static str,
        len: usize,
        expected: u64,
        width: u32,
        height: u32,
    },
    #[error("frame too large for a ROS message: {0}")]
    Cdr(#[from] LengthOverflow),
    #[error(transparent)]
    MessageDefinition(#[from] UnknownMessageType),
    #[error(transparent)]
    Write(#[from] WriteError),
}

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// The topics of a bag, in the order each frame's messages are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Topic {
    ColorImage,
    AlignedDepth,
    CameraInfo,
    Segmentation,
    Instances,
    CameraPose,
    Grasps,
}

impl Topic {
    const ALL: [Topic; 7] = [
        Topic::ColorImage,
        Topic::AlignedDepth,
        Topic::CameraInfo,
        Topic::Segmentation,
        Topic::Instances,
        Topic::CameraPose,
        Topic::Grasps,
    ];

    /// Absolute names: what the node's default remappings resolve its inputs to.
    fn name(self) -> &'static str {
        match self {
            Topic::ColorImage => "/camera/color/image_raw",
            Topic::AlignedDepth => "/camera/aligned_depth_to_color/image_raw",
            Topic::CameraInfo => "/camera/color/camera_info",
            Topic::Segmentation => "/ground_truth/segmentation",
            Topic::Instances => "/ground_truth/instances",
            Topic::CameraPose => "/ground_truth/camera_pose",
            Topic::Grasps => "/ground_truth/grasps",
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            Topic::ColorImage | Topic::AlignedDepth | Topic::Segmentation | Topic::Instances => {
                "sensor_msgs/msg/Image"
            }
            Topic::CameraInfo => "sensor_msgs/msg/CameraInfo",
            Topic::CameraPose => "geometry_msgs/msg/PoseStamped",
            Topic::Grasps => "perception_msgs/msg/GraspArray",
        }
    }
}

/// Writes a rosbag2 MCAP bag frame by frame; [`BagWriter::finish`] completes it. Dropped
/// unfinished, it still closes the MCAP file, but the folder lacks the metadata.yaml that
/// rosbag2 readers need.
pub struct BagWriter {
    options: BagOptions,
    bag: McapBagWriter,
    /// Topic of the bag per topic, indexed like [`Topic::ALL`].
    topic_ids: [TopicId; Topic::ALL.len()],
    frame_count: usize,
}

impl BagWriter {
    /// Creates the bag folder `path` (must not exist yet: error otherwise, naming the path and
    /// saying to remove it or choose another) holding `<name>_0.mcap` and, on finish,
    /// `metadata.yaml`.
    pub fn create(path: &Path, options: BagOptions) -> Result<Self, BagError> {
        validate_options(&options)?;
        let mut bag = McapBagWriter::create(path)?;
        let topic_ids = Topic::ALL
            .iter()
            .map(|topic| {
                let definition = msg_defs::full_text(topic.type_name())?;
                Ok(bag.add_topic(topic.name(), topic.type_name(), &definition)?)
            })
            .collect::<Result<Vec<_>, BagError>>()?
            .try_into()
            .expect("one topic id per topic");
        Ok(Self {
            options,
            bag,
            topic_ids,
            frame_count: 0,
        })
    }

    /// Writes frame number `index` (stamps = start + index / rate) on all topics.
    /// The index is the number of frames written before: 0, 1, 2...
    pub fn write_frame(&mut self, frame: &BagFrame) -> Result<(), BagError> {
        validate_frame(frame)?;
        let index = self.frame_count;
        let stamp_ns = self.stamp_ns(index)?;
        let stamp = Stamp {
            sec: i32::try_from(stamp_ns / NANOS_PER_SECOND).map_err(|_| {
                BagError::StampOutOfRange {
                    index,
                    stamp_ns: u128::from(stamp_ns),
                }
            })?,
            // Below 1e9, so it fits.
            nanosec: (stamp_ns % NANOS_PER_SECOND) as u32,
        };

        // Encode every message before writing any, so a frame that cannot be encoded leaves
        // the bag untouched.
        let payloads = Topic::ALL
            .iter()
            .map(|&topic| self.encode(topic, frame, stamp))
            .collect::<Result<Vec<_>, _>>()?;
        for (&topic_id, payload) in self.topic_ids.iter().zip(&payloads) {
            self.bag.write(topic_id, stamp_ns, payload)?;
        }
        self.frame_count += 1;
        Ok(())
    }

    /// Finishes the MCAP file (summary, footer) and writes metadata.yaml. Returns the number of
    /// frames.
    pub fn finish(self) -> Result<usize, BagError> {
        self.bag.finish()?;
        Ok(self.frame_count)
    }

    /// start + index / rate, rounded to the nanosecond.
    fn stamp_ns(&self, index: usize) -> Result<u64, BagError> {
        let offset_ns = (index as f64 * NANOS_PER_SECOND as f64 / self.options.rate_hz).round();
        let stamp_ns = u128::from(self.options.start_time_ns) + offset_ns as u128;
        u64::try_from(stamp_ns).map_err(|_| BagError::StampOutOfRange { index, stamp_ns })
    }

    fn encode(
        &self,
        topic: Topic,
        frame: &BagFrame,
        stamp: Stamp,
    ) -> Result<Vec<u8>, LengthOverflow> {
        let camera_frame_id = &self.options.camera_frame_id;
        let (width, height) = (frame.width, frame.height);
        // validate_frame checked that width * 3 fits in u32.
        match topic {
            Topic::ColorImage => cdr::image(
                stamp,
                camera_frame_id,
                width,
                height,
                "rgb8",
                width * 3,
                PixelData::U8(frame.rgb),
            ),
            Topic::AlignedDepth => cdr::image(
                stamp,
                camera_frame_id,
                width,
                height,
                "16UC1",
                width * 2,
                PixelData::U16(frame.depth_mm),
            ),
            Topic::CameraInfo => {
                cdr::camera_info(stamp, camera_frame_id, width, height, frame.intrinsics)
            }
            Topic::Segmentation => cdr::image(
                stamp,
                camera_frame_id,
                width,
                height,
                "mono8",
                width,
                PixelData::U8(frame.class_mask),
            ),
            Topic::Instances => cdr::image(
                stamp,
                camera_frame_id,
                width,
                height,
                "mono16",
                width * 2,
                PixelData::U16(frame.instance_mask),
            ),
            Topic::CameraPose => cdr::pose_stamped(
                stamp,
                &self.options.cell_frame_id,
                frame.cell_from_camera_translation_m,
                frame.cell_from_camera_rotation_xyzw,
            ),
            Topic::Grasps => cdr::grasp_array(stamp, camera_frame_id, frame.grasps),
        }
    }
}

fn validate_options(options: &BagOptions) -> Result<(), BagError> {
    if !(options.rate_hz.is_finite() && options.rate_hz > 0.0) {
        return Err(BagError::InvalidRate {
            rate_hz: options.rate_hz,
        });
    }
    for (field, frame_id) in [
        ("camera_frame_id", &options.camera_frame_id),
        ("cell_frame_id", &options.cell_frame_id),
    ] {
        if frame_id.is_empty() || frame_id.contains('\0') {
            return Err(BagError::InvalidFrameId {
                field,
                frame_id: frame_id.clone(),
            });
        }
    }
    Ok(())
}

fn validate_frame(frame: &BagFrame) -> Result<(), BagError> {
    let (width, height) = (frame.width, frame.height);
    if width == 0 || height == 0 {
        return Err(BagError::EmptyFrame { width, height });
    }
    // Image.step is a u32; rgb8 has the widest rows.
    if width.checked_mul(3).is_none() {
        return Err(BagError::Cdr(LengthOverflow {
            field: "Image.step",
            len: width as usize * 3,
        }));
    }
    let pixels = u64::from(width) * u64::from(height);
    let buffers = [
        ("rgb", frame.rgb.len(), 3 * pixels),
        ("depth_mm", frame.depth_mm.len(), pixels),
        ("class_mask", frame.class_mask.len(), pixels),
        ("instance_mask", frame.instance_mask.len(), pixels),
    ];
    for (field, len, expected) in buffers {
        if len as u64 != expected {
            return Err(BagError::FrameSize {
                field,
                len,
                expected,
                width,
                height,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::fs;
    use std::path::PathBuf;

    use super::*;

    const WIDTH: u32 = 8;
    const HEIGHT: u32 = 6;

    /// A bag path under the system temp folder, removed before use and on drop.
    struct TempBag {
        path: PathBuf,
    }

    impl TempBag {
        fn new(name: &str) -> Self {
            let path = std::env::temp_dir()
                .join(format!("perception_bag_test_{}_{name}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            Self { path }
        }

        fn mcap_path(&self) -> PathBuf {
            let name = self.path.file_name().expect("named").to_string_lossy();
            self.path.join(format!("{name}_0.mcap"))
        }
    }

    impl Drop for TempBag {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.path);
        }
    }

    /// Owned buffers of a test frame; values depend on the pixel and frame index so that a
    /// mix-up of pixels, frames or topics shows.
    struct FrameBuffers {
        width: u32,
        height: u32,
        rgb: Vec<u8>,
        depth_mm: Vec<u16>,
        class_mask: Vec<u8>,
        instance_mask: Vec<u16>,
        grasps: Vec<BagGrasp>,
        index: usize,
    }

    impl FrameBuffers {
        fn new(width: u32, height: u32, index: usize) -> Self {
            let pixels = (width * height) as usize;
            // 1, 2, 3, 0, 1... grasps: frame 3 has none.
            let grasp_count = (index + 1) % 4;
            Self {
                width,
                height,
                rgb: (0..pixels * 3).map(|i| (i + index * 7) as u8).collect(),
                depth_mm: (0..pixels).map(|i| (300 + 3 * i + index) as u16).collect(),
                class_mask: (0..pixels).map(|i| ((i + index) % 5) as u8).collect(),
                instance_mask: (0..pixels).map(|i| (i % 3 * 257 + index) as u16).collect(),
                grasps: (0..grasp_count)
                    .map(|g| BagGrasp {
                        gripper_type: (g % 2) as u8,
                        position_m: [0.01 * g as f64, -0.02, 0.5 + 0.1 * index as f64],
                        orientation_xyzw: [0.0, 0.0, 0.6, 0.8],
                        quality: 0.9 - 0.1 * g as f32,
                        width_m: 0.04,
                        center_x_px: 3.5 + g as f32,
                        center_y_px: 2.25,
                        angle_rad: 0.5,
                        approach_depth_m: 0.55,
                        instance_id: (g + 1) as u16,
                    })
                    .collect(),
                index,
            }
        }

        fn frame(&self) -> BagFrame<'_> {
            BagFrame {
                width: self.width,
                height: self.height,
                rgb: &self.rgb,
                depth_mm: &self.depth_mm,
                class_mask: &self.class_mask,
                instance_mask: &self.instance_mask,
                intrinsics: [
                    f64::from(self.width),
                    f64::from(self.width) + 1.0,
                    f64::from(self.width) / 2.0,
                    f64::from(self.height) / 2.0,
                ],
                cell_from_camera_translation_m: [0.1, 0.2, 1.0 + self.index as f64],
                cell_from_camera_rotation_xyzw: [1.0, 0.0, 0.0, 0.0],
                grasps: &self.grasps,
            }
        }
    }

    fn write_bag(path: &Path, width: u32, height: u32, frames: usize) -> usize {
        let mut writer = BagWriter::create(path, BagOptions::default()).expect("new bag folder");
        for index in 0..frames {
            let buffers = FrameBuffers::new(width, height, index);
            writer.write_frame(&buffers.frame()).expect("valid frame");
        }
        writer.finish().expect("bag finishes")
    }

    fn start_ns() -> u64 {
        BagOptions::default().start_time_ns
    }

    #[test]
    fn bag_reads_back_with_every_topic_per_frame() {
        let bag = TempBag::new("read_back");
        assert_eq!(write_bag(&bag.path, WIDTH, HEIGHT, 3), 3);
        let bytes = fs::read(bag.mcap_path()).expect("mcap file written");

        let summary = mcap::Summary::read(&bytes)
            .expect("valid summary")
            .expect("summary present");
        let stats = summary.stats.as_ref().expect("statistics");
        assert_eq!(stats.message_count, 21);
        assert_eq!(stats.message_start_time, start_ns());
        assert_eq!(stats.message_end_time, start_ns() + 200_000_000);
        // The three Image topics share one schema.
        assert_eq!(summary.schemas.len(), 4);
        assert!(summary
            .chunk_indexes
            .iter()
            .all(|chunk| chunk.compression == "lz4"));
        let channel_types: HashMap<&str, &str> = summary
            .channels
            .values()
            .map(|channel| {
                let schema = channel.schema.as_ref().expect("every channel has a schema");
                assert_eq!(schema.encoding, "ros2msg");
                assert_eq!(channel.message_encoding, "cdr");
                assert_eq!(channel.metadata["offered_qos_profiles"], "");
                assert_eq!(stats.channel_message_counts[&channel.id], 3);
                (channel.topic.as_str(), schema.name.as_str())
            })
            .collect();
        let expected_types = HashMap::from([
            ("/camera/color/image_raw", "sensor_msgs/msg/Image"),
            (
                "/camera/aligned_depth_to_color/image_raw",
                "sensor_msgs/msg/Image",
            ),
            ("/camera/color/camera_info", "sensor_msgs/msg/CameraInfo"),
            ("/ground_truth/segmentation", "sensor_msgs/msg/Image"),
            ("/ground_truth/instances", "sensor_msgs/msg/Image"),
            ("/ground_truth/camera_pose", "geometry_msgs/msg/PoseStamped"),
            ("/ground_truth/grasps", "perception_msgs/msg/GraspArray"),
        ]);
        assert_eq!(channel_types, expected_types);

        let messages: Vec<mcap::Message> = mcap::MessageStream::new(&bytes)
            .expect("valid mcap")
            .collect::<Result<_, _>>()
            .expect("readable messages");
        assert_eq!(messages.len(), 21);
        for (position, message) in messages.iter().enumerate() {
            let index = position / Topic::ALL.len();
            let topic = Topic::ALL[position % Topic::ALL.len()];
            let stamp_ns = start_ns() + index as u64 * 100_000_000;
            assert_eq!(message.channel.topic, topic.name());
            assert_eq!(message.log_time, stamp_ns);
            assert_eq!(message.publish_time, stamp_ns);
            // Header.stamp right after the encapsulation header.
            let sec = (stamp_ns / NANOS_PER_SECOND) as i32;
            assert_eq!(&message.data[4..8], &sec.to_le_bytes());
            let nanosec = (stamp_ns % NANOS_PER_SECOND) as u32;
            assert_eq!(&message.data[8..12], &nanosec.to_le_bytes());
        }

        // Image data are the last bytes of the message, u16 little endian.
        let first = FrameBuffers::new(WIDTH, HEIGHT, 0);
        let color = &messages[0].data;
        assert!(color.ends_with(&first.rgb));
        let depth = &messages[1].data;
        let depth_le: Vec<u8> = first
            .depth_mm
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert!(depth.ends_with(&depth_le));
        let depth_len_at = depth.len() - depth_le.len() - 4;
        assert_eq!(
            &depth[depth_len_at..depth_len_at + 4],
            &(WIDTH * HEIGHT * 2).to_le_bytes()
        );
    }

    #[test]
    fn schemas_carry_every_dependency() {
        let bag = TempBag::new("schemas");
        write_bag(&bag.path, WIDTH, HEIGHT, 1);
        let bytes = fs::read(bag.mcap_path()).expect("mcap file written");
        let summary = mcap::Summary::read(&bytes)
            .expect("valid")
            .expect("present");
        for schema in summary.schemas.values() {
            let text = std::str::from_utf8(&schema.data).expect("utf-8 schema");
            assert_eq!(text, msg_defs::full_text(&schema.name).expect("known type"));
            assert!(
                text.contains("\nMSG: builtin_interfaces/Time\n"),
                "{}",
                schema.name
            );
        }
    }

    #[test]
    fn metadata_yaml_describes_the_mcap_file() {
        let bag = TempBag::new("metadata");
        write_bag(&bag.path, WIDTH, HEIGHT, 3);
        let text = fs::read_to_string(bag.path.join("metadata.yaml")).expect("metadata written");
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("valid yaml");
        let info = &yaml["rosbag2_bagfile_information"];
        assert_eq!(info["version"], 9);
        assert_eq!(info["storage_identifier"], "mcap");
        assert_eq!(info["message_count"], 21);
        assert_eq!(info["duration"]["nanoseconds"], 200_000_000);
        assert_eq!(info["starting_time"]["nanoseconds_since_epoch"], start_ns());
        assert_eq!(info["compression_mode"], "");
        assert_eq!(info["ros_distro"], "jazzy");
        let file_name = bag
            .mcap_path()
            .file_name()
            .expect("named")
            .to_string_lossy()
            .to_string();
        assert_eq!(info["relative_file_paths"][0], file_name.as_str());
        assert_eq!(info["files"][0]["path"], file_name.as_str());
        assert_eq!(info["files"][0]["message_count"], 21);
        let topics = info["topics_with_message_count"]
            .as_sequence()
            .expect("topic list");
        assert_eq!(topics.len(), 7);
        for (entry, topic) in topics.iter().zip(Topic::ALL) {
            assert_eq!(entry["message_count"], 3);
            let metadata = &entry["topic_metadata"];
            assert_eq!(metadata["name"], topic.name());
            assert_eq!(metadata["type"], topic.type_name());
            assert_eq!(metadata["serialization_format"], "cdr");
            assert_eq!(
                metadata["offered_qos_profiles"],
                serde_yaml::Value::Sequence(Vec::new())
            );
        }
    }

    #[test]
    fn wrong_buffer_length_is_rejected_and_the_bag_stays_usable() {
        let bag = TempBag::new("wrong_length");
        let mut writer = BagWriter::create(&bag.path, BagOptions::default()).expect("new folder");
        let mut buffers = FrameBuffers::new(WIDTH, HEIGHT, 0);
        buffers.depth_mm.pop();
        let err = writer
            .write_frame(&buffers.frame())
            .expect_err("depth one short");
        assert!(matches!(
            err,
            BagError::FrameSize {
                field: "depth_mm",
                len: 47,
                expected: 48,
                ..
            }
        ));
        assert!(
            err.to_string()
                .contains("BagFrame.depth_mm holds 47 values"),
            "{err}"
        );

        let mut buffers = FrameBuffers::new(WIDTH, HEIGHT, 0);
        buffers.rgb.truncate((WIDTH * HEIGHT) as usize);
        let err = writer
            .write_frame(&buffers.frame())
            .expect_err("rgb given as mono");
        assert!(matches!(err, BagError::FrameSize { field: "rgb", .. }));

        let empty = FrameBuffers::new(0, HEIGHT, 0);
        let err = writer.write_frame(&empty.frame()).expect_err("no pixels");
        assert!(matches!(err, BagError::EmptyFrame { width: 0, .. }));

        // A rejected frame does not take an index.
        let good = FrameBuffers::new(WIDTH, HEIGHT, 0);
        writer.write_frame(&good.frame()).expect("valid frame");
        assert_eq!(writer.finish().expect("finishes"), 1);
    }

    #[test]
    fn existing_folder_is_rejected() {
        let bag = TempBag::new("exists");
        fs::create_dir_all(&bag.path).expect("temp folder");
        let err = BagWriter::create(&bag.path, BagOptions::default())
            .err()
            .expect("folder exists");
        assert!(matches!(
            err,
            BagError::Write(WriteError::AlreadyExists { .. })
        ));
        let message = err.to_string();
        assert!(
            message.contains(&bag.path.display().to_string()),
            "{message}"
        );
        assert!(message.contains("remove it or choose another"), "{message}");
    }

    #[test]
    fn invalid_options_are_rejected() {
        let bag = TempBag::new("options");
        for rate_hz in [0.0, -5.0, f64::NAN, f64::INFINITY] {
            let options = BagOptions {
                rate_hz,
                ..BagOptions::default()
            };
            let err = BagWriter::create(&bag.path, options)
                .err()
                .expect("bad rate");
            assert!(matches!(err, BagError::InvalidRate { .. }), "{err}");
        }
        let options = BagOptions {
            cell_frame_id: String::new(),
            ..BagOptions::default()
        };
        let err = BagWriter::create(&bag.path, options)
            .err()
            .expect("empty frame_id");
        assert!(matches!(
            err,
            BagError::InvalidFrameId {
                field: "cell_frame_id",
                ..
            }
        ));
        // Nothing was created for rejected options.
        assert!(!bag.path.exists());
    }

    #[test]
    fn stamps_past_2038_are_rejected() {
        let bag = TempBag::new("y2038");
        let options = BagOptions {
            start_time_ns: (i32::MAX as u64) * NANOS_PER_SECOND,
            rate_hz: 1.0,
            ..BagOptions::default()
        };
        let mut writer = BagWriter::create(&bag.path, options).expect("new folder");
        let buffers = FrameBuffers::new(WIDTH, HEIGHT, 0);
        writer
            .write_frame(&buffers.frame())
            .expect("last representable second");
        let err = writer
            .write_frame(&buffers.frame())
            .expect_err("one second later");
        assert!(matches!(err, BagError::StampOutOfRange { index: 1, .. }));
    }

    /// Writes a bag for tests/scene/bag_check.py to read with rosbags and rclpy:
    /// `PERCEPTION_TEST_BAG_OUT=/tmp/bagcheck cargo test --no-default-features --lib scene::bag -- --ignored`.
    /// 320x240 frames fill several 1 MiB chunks, so readers cross chunk boundaries.
    #[test]
    #[ignore = "writes a bag for the Python checker; needs PERCEPTION_TEST_BAG_OUT"]
    fn write_bag_for_python_check() {
        let path = std::env::var_os("PERCEPTION_TEST_BAG_OUT")
            .expect("set PERCEPTION_TEST_BAG_OUT to the bag folder to write");
        assert_eq!(write_bag(Path::new(&path), 320, 240, 5), 5);
    }
}
