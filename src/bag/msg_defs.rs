//! Message definition texts for the schemas of a rosbag2 MCAP file.
//!
//! rosbag2 stores, per message type, the type's `.msg` file followed by every type it depends
//! on, recursively (its `ros2msg` schema encoding, rosbag2 `docs/message_definition_encoding.md`).
//! Readers that build decoders at run time (rosbags, Foxglove, `ros2 bag` without the message
//! packages installed) decode the bag from these texts alone, so they are the files verbatim,
//! comments included, as `ros2 bag record` would copy them from the message packages.
//! The standard ones are those of ROS 2 Jazzy (builtin_interfaces 2.0.3, std_msgs,
//! geometry_msgs and sensor_msgs 5.3.6); perception_msgs comes from this repository.

use std::collections::BTreeSet;

use thiserror::Error;

/// A type the bag uses but this file holds no definition for: a programming error here, not a
/// problem with the caller's data.
#[derive(Debug, Error, Clone, PartialEq)]
#[error("no .msg definition for '{type_name}': neither src/bag/msg_defs.rs holds it nor an installed package (share/<pkg>/msg/<Type>.msg under AMENT_PREFIX_PATH); source the ROS environment (scripts/env.sh) or add the file's text to DEFINITIONS")]
pub struct UnknownMessageType {
    pub type_name: String,
}

/// Types that never get a `MSG:` section (rosbag2's PRIMITIVE_TYPES).
const PRIMITIVE_TYPES: &[&str] = &[
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
    "uint32", "int64", "uint64", "string",
];

/// 80 `=` then `MSG: <type>`: the separator rosbag2 puts before each dependency.
const SEPARATOR: &str =
    "================================================================================";

/// Every definition a bag written here can need, keyed `package/Type` as a field names it.
const DEFINITIONS: &[(&str, &str)] = &[
    ("builtin_interfaces/Time", TIME),
    ("std_msgs/Header", HEADER),
    ("sensor_msgs/Image", IMAGE),
    ("sensor_msgs/CameraInfo", CAMERA_INFO),
    ("sensor_msgs/RegionOfInterest", REGION_OF_INTEREST),
    ("geometry_msgs/PoseStamped", POSE_STAMPED),
    ("geometry_msgs/Pose", POSE),
    ("geometry_msgs/Point", POINT),
    ("geometry_msgs/Quaternion", QUATERNION),
    ("perception_msgs/Grasp", GRASP),
    ("perception_msgs/GraspArray", GRASP_ARRAY),
    ("perception_msgs/Detection2D", DETECTION_2D),
    ("perception_msgs/Detection2DArray", DETECTION_2D_ARRAY),
];

/// The complete `ros2msg` schema text of `type_name` (`pkg/msg/Type` or `pkg/Type`), laid out
/// as rosbag2's `LocalMessageDefinitionSource::get_full_text` does: the type's own text, then
/// each dependency not yet written, depth first, in sorted order per level, each preceded by a
/// newline, the separator line and `MSG: pkg/Type`.
pub fn full_text(type_name: &str) -> Result<String, UnknownMessageType> {
    full_text_with(type_name, &|_| None)
}

/// [`full_text`] for any type: definitions held here first, then `lookup(pkg/Type)` (such as
/// [`installed_definition`]) for the others.
pub fn full_text_with(
    type_name: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, UnknownMessageType> {
    let mut seen = BTreeSet::new();
    append_recursive(&short_name(type_name), &mut seen, lookup)
}

/// The `.msg` file of `pkg/Type` in an installed ROS package: `share/<pkg>/msg/<Type>.msg`
/// under each folder of `AMENT_PREFIX_PATH`, first match.
pub fn installed_definition(type_name: &str) -> Option<String> {
    let (package, name) = type_name.split_once('/')?;
    let prefixes = std::env::var_os("AMENT_PREFIX_PATH")?;
    std::env::split_paths(&prefixes).find_map(|prefix| {
        let path = prefix
            .join("share")
            .join(package)
            .join("msg")
            .join(format!("{name}.msg"));
        std::fs::read_to_string(path).ok()
    })
}

fn append_recursive(
    type_name: &str,
    seen: &mut BTreeSet<String>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, UnknownMessageType> {
    let text = definition(type_name)
        .map(str::to_string)
        .or_else(|| lookup(type_name))
        .ok_or_else(|| UnknownMessageType {
            type_name: type_name.to_string(),
        })?;
    let package = type_name.split('/').next().unwrap_or_default();
    let mut result = text.clone();
    for dependency in dependencies(&text, package) {
        if seen.insert(dependency.clone()) {
            result.push('\n');
            result.push_str(SEPARATOR);
            result.push_str("\nMSG: ");
            result.push_str(&dependency);
            result.push('\n');
            result.push_str(&append_recursive(&dependency, seen, lookup)?);
        }
    }
    Ok(result)
}

/// `pkg/msg/Type` -> `pkg/Type`, the form fields and `MSG:` lines use.
fn short_name(type_name: &str) -> String {
    type_name.replacen("/msg/", "/", 1)
}

fn definition(type_name: &str) -> Option<&'static str> {
    DEFINITIONS
        .iter()
        .find(|(name, _)| *name == type_name)
        .map(|(_, text)| *text)
}

/// The non-primitive field types of a `.msg` text, qualified with `package` where a field
/// names a type of its own package (`Pose pose` in geometry_msgs/PoseStamped).
fn dependencies(text: &str, package: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(field_type)
        .filter(|field_type| !PRIMITIVE_TYPES.contains(field_type))
        .map(|field_type| {
            if field_type.contains('/') {
                field_type.to_string()
            } else {
                format!("{package}/{field_type}")
            }
        })
        .collect()
}

/// The type of a field or constant line, as rosbag2's MSG_FIELD_TYPE_REGEX finds it: the first
/// word, then an optional array suffix, then whitespace. Comment lines start with `#` and
/// blank lines have no word, so both give `None`.
fn field_type(line: &str) -> Option<&str> {
    let line = line.trim_start();
    let type_len = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '/'))
        .unwrap_or(line.len());
    let (field_type, rest) = line.split_at(type_len);
    let rest = match rest.strip_prefix('[') {
        Some(after_bracket) => after_bracket.split_once(']')?.1,
        None => rest,
    };
    (!field_type.is_empty() && rest.starts_with(char::is_whitespace)).then_some(field_type)
}

/// `perception_msgs/msg/Grasp.msg` of this repository.
const GRASP: &str = include_str!("../../perception_msgs/msg/Grasp.msg");

/// `perception_msgs/msg/GraspArray.msg` of this repository.
const GRASP_ARRAY: &str = include_str!("../../perception_msgs/msg/GraspArray.msg");

/// `perception_msgs/msg/Detection2D.msg` of this repository.
const DETECTION_2D: &str = include_str!("../../perception_msgs/msg/Detection2D.msg");

/// `perception_msgs/msg/Detection2DArray.msg` of this repository.
const DETECTION_2D_ARRAY: &str = include_str!("../../perception_msgs/msg/Detection2DArray.msg");

/// `builtin_interfaces/msg/Time.msg` of ROS 2 Jazzy.
const TIME: &str = r##"# This message communicates ROS Time defined here:
# https://design.ros2.org/articles/clock_and_time.html

# The seconds component, valid over all int32 values.
int32 sec

# The nanoseconds component, valid in the range [0, 1e9), to be added to the seconds component. 
# e.g.
# The time -1.7 seconds is represented as {sec: -2, nanosec: 3e8}
# The time 1.7 seconds is represented as {sec: 1, nanosec: 7e8}
uint32 nanosec
"##;

/// `std_msgs/msg/Header.msg` of ROS 2 Jazzy.
const HEADER: &str = r##"# Standard metadata for higher-level stamped data types.
# This is generally used to communicate timestamped data
# in a particular coordinate frame.

# Two-integer timestamp that is expressed as seconds and nanoseconds.
builtin_interfaces/Time stamp

# Transform frame with which this data is associated.
string frame_id
"##;

/// `sensor_msgs/msg/Image.msg` of ROS 2 Jazzy.
const IMAGE: &str = r##"# This message contains an uncompressed image
# (0, 0) is at top-left corner of image

std_msgs/Header header # Header timestamp should be acquisition time of image
                             # Header frame_id should be optical frame of camera
                             # origin of frame should be optical center of cameara
                             # +x should point to the right in the image
                             # +y should point down in the image
                             # +z should point into to plane of the image
                             # If the frame_id here and the frame_id of the CameraInfo
                             # message associated with the image conflict
                             # the behavior is undefined

uint32 height                # image height, that is, number of rows
uint32 width                 # image width, that is, number of columns

# The legal values for encoding are in file include/sensor_msgs/image_encodings.hpp
# If you want to standardize a new string format, join
# ros-users@lists.ros.org and send an email proposing a new encoding.

string encoding       # Encoding of pixels -- channel meaning, ordering, size
                      # taken from the list of strings in include/sensor_msgs/image_encodings.hpp

uint8 is_bigendian    # is this data bigendian?
uint32 step           # Full row length in bytes
uint8[] data          # actual matrix data, size is (step * rows)
"##;

/// `sensor_msgs/msg/CameraInfo.msg` of ROS 2 Jazzy.
const CAMERA_INFO: &str = r##"# This message defines meta information for a camera. It should be in a
# camera namespace on topic "camera_info" and accompanied by up to five
# image topics named:
#
#   image_raw - raw data from the camera driver, possibly Bayer encoded
#   image            - monochrome, distorted
#   image_color      - color, distorted
#   image_rect       - monochrome, rectified
#   image_rect_color - color, rectified
#
# The image_pipeline contains packages (image_proc, stereo_image_proc)
# for producing the four processed image topics from image_raw and
# camera_info. The meaning of the camera parameters are described in
# detail at http://www.ros.org/wiki/image_pipeline/CameraInfo.
#
# The image_geometry package provides a user-friendly interface to
# common operations using this meta information. If you want to, e.g.,
# project a 3d point into image coordinates, we strongly recommend
# using image_geometry.
#
# If the camera is uncalibrated, the matrices D, K, R, P should be left
# zeroed out. In particular, clients may assume that K[0] == 0.0
# indicates an uncalibrated camera.

#######################################################################
#                     Image acquisition info                          #
#######################################################################

# Time of image acquisition, camera coordinate frame ID
std_msgs/Header header # Header timestamp should be acquisition time of image
                             # Header frame_id should be optical frame of camera
                             # origin of frame should be optical center of camera
                             # +x should point to the right in the image
                             # +y should point down in the image
                             # +z should point into the plane of the image


#######################################################################
#                      Calibration Parameters                         #
#######################################################################
# These are fixed during camera calibration. Their values will be the #
# same in all messages until the camera is recalibrated. Note that    #
# self-calibrating systems may "recalibrate" frequently.              #
#                                                                     #
# The internal parameters can be used to warp a raw (distorted) image #
# to:                                                                 #
#   1. An undistorted image (requires D and K)                        #
#   2. A rectified image (requires D, K, R)                           #
# The projection matrix P projects 3D points into the rectified image.#
#######################################################################

# The image dimensions with which the camera was calibrated.
# Normally this will be the full camera resolution in pixels.
uint32 height
uint32 width

# The distortion model used. Supported models are listed in
# sensor_msgs/distortion_models.hpp. For most cameras, "plumb_bob" - a
# simple model of radial and tangential distortion - is sufficent.
string distortion_model

# The distortion parameters, size depending on the distortion model.
# For "plumb_bob", the 5 parameters are: (k1, k2, t1, t2, k3).
float64[] d

# Intrinsic camera matrix for the raw (distorted) images.
#     [fx  0 cx]
# K = [ 0 fy cy]
#     [ 0  0  1]
# Projects 3D points in the camera coordinate frame to 2D pixel
# coordinates using the focal lengths (fx, fy) and principal point
# (cx, cy).
float64[9]  k # 3x3 row-major matrix

# Rectification matrix (stereo cameras only)
# A rotation matrix aligning the camera coordinate system to the ideal
# stereo image plane so that epipolar lines in both stereo images are
# parallel.
float64[9]  r # 3x3 row-major matrix

# Projection/camera matrix
#     [fx'  0  cx' Tx]
# P = [ 0  fy' cy' Ty]
#     [ 0   0   1   0]
# By convention, this matrix specifies the intrinsic (camera) matrix
#  of the processed (rectified) image. That is, the left 3x3 portion
#  is the normal camera intrinsic matrix for the rectified image.
# It projects 3D points in the camera coordinate frame to 2D pixel
#  coordinates using the focal lengths (fx', fy') and principal point
#  (cx', cy') - these may differ from the values in K.
# For monocular cameras, Tx = Ty = 0. Normally, monocular cameras will
#  also have R = the identity and P[1:3,1:3] = K.
# For a stereo pair, the fourth column [Tx Ty 0]' is related to the
#  position of the optical center of the second camera in the first
#  camera's frame. We assume Tz = 0 so both cameras are in the same
#  stereo image plane. The first camera always has Tx = Ty = 0. For
#  the right (second) camera of a horizontal stereo pair, Ty = 0 and
#  Tx = -fx' * B, where B is the baseline between the cameras.
# Given a 3D point [X Y Z]', the projection (x, y) of the point onto
#  the rectified image is given by:
#  [u v w]' = P * [X Y Z 1]'
#         x = u / w
#         y = v / w
#  This holds for both images of a stereo pair.
float64[12] p # 3x4 row-major matrix


#######################################################################
#                      Operational Parameters                         #
#######################################################################
# These define the image region actually captured by the camera       #
# driver. Although they affect the geometry of the output image, they #
# may be changed freely without recalibrating the camera.             #
#######################################################################

# Binning refers here to any camera setting which combines rectangular
#  neighborhoods of pixels into larger "super-pixels." It reduces the
#  resolution of the output image to
#  (width / binning_x) x (height / binning_y).
# The default values binning_x = binning_y = 0 is considered the same
#  as binning_x = binning_y = 1 (no subsampling).
uint32 binning_x
uint32 binning_y

# Region of interest (subwindow of full camera resolution), given in
#  full resolution (unbinned) image coordinates. A particular ROI
#  always denotes the same window of pixels on the camera sensor,
#  regardless of binning settings.
# The default setting of roi (all values 0) is considered the same as
#  full resolution (roi.width = width, roi.height = height).
RegionOfInterest roi
"##;

/// `sensor_msgs/msg/RegionOfInterest.msg` of ROS 2 Jazzy.
const REGION_OF_INTEREST: &str = r##"# This message is used to specify a region of interest within an image.
#
# When used to specify the ROI setting of the camera when the image was
# taken, the height and width fields should either match the height and
# width fields for the associated image; or height = width = 0
# indicates that the full resolution image was captured.

uint32 x_offset  # Leftmost pixel of the ROI
                 # (0 if the ROI includes the left edge of the image)
uint32 y_offset  # Topmost pixel of the ROI
                 # (0 if the ROI includes the top edge of the image)
uint32 height    # Height of ROI
uint32 width     # Width of ROI

# True if a distinct rectified ROI should be calculated from the "raw"
# ROI in this message. Typically this should be False if the full image
# is captured (ROI not used), and True if a subwindow is captured (ROI
# used).
bool do_rectify
"##;

/// `geometry_msgs/msg/PoseStamped.msg` of ROS 2 Jazzy.
const POSE_STAMPED: &str = r##"# A Pose with reference coordinate frame and timestamp

std_msgs/Header header
Pose pose
"##;

/// `geometry_msgs/msg/Pose.msg` of ROS 2 Jazzy.
const POSE: &str = r##"# A representation of pose in free space, composed of position and orientation.

Point position
Quaternion orientation
"##;

/// `geometry_msgs/msg/Point.msg` of ROS 2 Jazzy.
const POINT: &str = r##"# This contains the position of a point in free space
float64 x
float64 y
float64 z
"##;

/// `geometry_msgs/msg/Quaternion.msg` of ROS 2 Jazzy.
const QUATERNION: &str = r##"# This represents an orientation in free space in quaternion form.

float64 x 0
float64 y 0
float64 z 0
float64 w 1
"##;

#[cfg(test)]
mod tests {
    use super::*;

    /// The `MSG:` lines of a full text, in order.
    fn sections(text: &str) -> Vec<&str> {
        text.lines()
            .filter_map(|line| line.strip_prefix("MSG: "))
            .collect()
    }

    #[test]
    fn image_is_its_file_then_header_then_time() {
        let text = full_text("sensor_msgs/msg/Image").expect("Image is defined");
        assert!(text.starts_with(IMAGE));
        assert_eq!(
            sections(&text),
            ["std_msgs/Header", "builtin_interfaces/Time"]
        );
        let header_section = format!("\n{SEPARATOR}\nMSG: std_msgs/Header\n{HEADER}\n");
        assert!(text.contains(&header_section));
        assert!(text.ends_with(TIME));
    }

    #[test]
    fn dependencies_come_in_sorted_order_each_once() {
        let camera_info = full_text("sensor_msgs/msg/CameraInfo").expect("CameraInfo is defined");
        assert_eq!(
            sections(&camera_info),
            [
                "sensor_msgs/RegionOfInterest",
                "std_msgs/Header",
                "builtin_interfaces/Time"
            ]
        );
        let grasps = full_text("perception_msgs/msg/GraspArray").expect("GraspArray is defined");
        assert_eq!(
            sections(&grasps),
            [
                "perception_msgs/Grasp",
                "geometry_msgs/Pose",
                "geometry_msgs/Point",
                "geometry_msgs/Quaternion",
                "std_msgs/Header",
                "builtin_interfaces/Time"
            ]
        );
    }

    #[test]
    fn field_types_skip_comments_constants_and_array_suffixes() {
        assert_eq!(
            field_type("float64[9]  k # 3x3 row-major matrix"),
            Some("float64")
        );
        assert_eq!(field_type("Grasp[] grasps"), Some("Grasp"));
        assert_eq!(field_type("uint8 GRIPPER_SUCTION = 1"), Some("uint8"));
        assert_eq!(field_type("    # +y should point down"), None);
        assert_eq!(field_type(""), None);
    }

    #[test]
    fn unknown_type_is_an_error() {
        let err = full_text("sensor_msgs/msg/PointCloud2").expect_err("not defined here");
        assert_eq!(err.type_name, "sensor_msgs/PointCloud2");
    }
}
