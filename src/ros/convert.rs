//! sensor_msgs <-> the library's image types. Pixel maths lives in `preprocess`.

use r2r::builtin_interfaces::msg::Time;
use r2r::geometry_msgs::msg::{
    Point, Pose, PoseArray, PoseWithCovariance, PoseWithCovarianceStamped, Quaternion, Vector3,
};
use r2r::perception_msgs::msg::{Detection2D, Detection2DArray, Grasp, GraspArray};
use r2r::sensor_msgs::msg::{CameraInfo, Image};
use r2r::std_msgs::msg::ColorRGBA;
use r2r::std_msgs::msg::Header;
use r2r::visualization_msgs::msg::{Marker, MarkerArray};

use crate::image::{CameraIntrinsics, DepthImage, MonoImage, RgbImage};
use crate::pipeline::{CameraPose, Gripper, ScoredGrasp};
use crate::postprocess::{Instance, InstanceImage};
use crate::preprocess::RawImage;

pub fn raw_image(msg: &Image) -> RawImage<'_> {
    RawImage {
        width: msg.width,
        height: msg.height,
        encoding: &msg.encoding,
        is_bigendian: msg.is_bigendian != 0,
        step: msg.step,
        data: &msg.data,
    }
}

pub fn stamp_ns(stamp: &Time) -> i64 {
    i64::from(stamp.sec) * 1_000_000_000 + i64::from(stamp.nanosec)
}

/// Pinhole intrinsics from K, or `None` for an uncalibrated camera (K all zeros) or an
/// unusable one (non-positive or non-finite focal length).
pub fn intrinsics(info: &CameraInfo) -> Option<CameraIntrinsics> {
    let k = &info.k;
    let (fx, fy, cx, cy) = (k[0], k[4], k[2], k[5]);
    let usable = [fx, fy, cx, cy].iter().all(|v| v.is_finite()) && fx > 0.0 && fy > 0.0;
    usable.then_some(CameraIntrinsics {
        width: info.width,
        height: info.height,
        fx_px: fx,
        fy_px: fy,
        cx_px: cx,
        cy_px: cy,
    })
}

/// A packed little-endian image message: `bytes_per_pixel * width` bytes per row.
fn image_message(
    header: &Header,
    (width, height): (u32, u32),
    encoding: &str,
    bytes_per_pixel: u32,
    data: Vec<u8>,
) -> Image {
    Image {
        header: header.clone(),
        height,
        width,
        encoding: encoding.into(),
        is_bigendian: 0,
        step: width * bytes_per_pixel,
        data,
    }
}

pub fn mono8_message(header: &Header, mask: &MonoImage) -> Image {
    image_message(
        header,
        (mask.width, mask.height),
        "mono8",
        1,
        mask.data.clone(),
    )
}

/// 32FC1 metres, little-endian, NaN where there is no estimate (REP 118).
pub fn depth32_message(header: &Header, depth: &DepthImage) -> Image {
    let data = depth.depth_m.iter().flat_map(|v| v.to_le_bytes()).collect();
    image_message(header, (depth.width, depth.height), "32FC1", 4, data)
}

/// The camera's pose in the cell frame `frame_id`, stamped with the image's stamp.
pub fn camera_pose_message(
    header: &Header,
    frame_id: &str,
    pose: &CameraPose,
) -> PoseWithCovarianceStamped {
    let [x, y, z] = pose.position_m;
    let [qx, qy, qz, qw] = pose.orientation_xyzw;
    PoseWithCovarianceStamped {
        header: Header {
            stamp: header.stamp.clone(),
            frame_id: frame_id.to_string(),
        },
        pose: PoseWithCovariance {
            pose: Pose {
                position: Point { x, y, z },
                orientation: Quaternion {
                    x: qx,
                    y: qy,
                    z: qz,
                    w: qw,
                },
            },
            covariance: pose.covariance.to_vec(),
        },
    }
}

/// mono16 instance ids, little-endian.
pub fn mono16_message(header: &Header, ids: &InstanceImage) -> Image {
    let data = ids.ids.iter().flat_map(|v| v.to_le_bytes()).collect();
    image_message(header, (ids.width, ids.height), "mono16", 2, data)
}

/// One Detection2D per instance; class names from the segmentation model's class list.
pub fn detections_message(
    header: &Header,
    instances: &[Instance],
    class_names: &[String],
) -> Detection2DArray {
    Detection2DArray {
        header: header.clone(),
        detections: instances
            .iter()
            .map(|d| {
                let [x0, y0, x1, y1] = d.bounds.map(|v| v as f32);
                let centroid = d.centroid_m.unwrap_or([0.0; 3]);
                Detection2D {
                    class_id: d.class_id as u16,
                    label: class_names
                        .get(d.class_id as usize)
                        .cloned()
                        .unwrap_or_default(),
                    score: d.score,
                    // Pixel edges: the box spans from x0's left edge to x1's right edge.
                    center_x_px: (x0 + x1 + 1.0) / 2.0,
                    center_y_px: (y0 + y1 + 1.0) / 2.0,
                    width_px: x1 - x0 + 1.0,
                    height_px: y1 - y0 + 1.0,
                    instance_id: d.id,
                    centroid_m: Point {
                        x: centroid[0],
                        y: centroid[1],
                        z: centroid[2],
                    },
                    centroid_valid: d.centroid_m.is_some(),
                }
            })
            .collect(),
    }
}

fn pose_of(grasp: &ScoredGrasp) -> Pose {
    let [x, y, z] = grasp.position_m;
    let [qx, qy, qz, qw] = grasp.orientation_xyzw;
    Pose {
        position: Point { x, y, z },
        orientation: Quaternion {
            x: qx,
            y: qy,
            z: qz,
            w: qw,
        },
    }
}

/// Ranked grasps, best first, in the image's frame (the camera optical frame).
pub fn grasps_message(header: &Header, grasps: &[ScoredGrasp]) -> GraspArray {
    GraspArray {
        header: header.clone(),
        grasps: grasps
            .iter()
            .map(|g| Grasp {
                gripper_type: match g.gripper {
                    Gripper::ParallelJaw => Grasp::GRIPPER_PARALLEL_JAW as u8,
                    Gripper::Suction => Grasp::GRIPPER_SUCTION as u8,
                },
                pose: pose_of(g),
                quality: g.quality,
                width_m: g.candidate.width_m as f32,
                center_x_px: g.candidate.center_px[0] as f32,
                center_y_px: g.candidate.center_px[1] as f32,
                angle_rad: g.candidate.angle_rad as f32,
                approach_depth_m: g.candidate.approach_depth_m as f32,
                instance_id: g.candidate.instance_id,
            })
            .collect(),
    }
}

pub fn grasp_poses_message(header: &Header, grasps: &[ScoredGrasp]) -> PoseArray {
    PoseArray {
        header: header.clone(),
        poses: grasps.iter().map(pose_of).collect(),
    }
}

/// For RViz: per grasp an arrow down the approach (6 cm, ending at the jaw centre or the
/// suction contact) and a line between the two jaw contacts or a disc the size of the suction
/// cup on the contact plane, coloured from red (quality 0) to green (1); the first marker clears
/// the previous frame's.
pub fn grasp_markers_message(header: &Header, grasps: &[ScoredGrasp]) -> MarkerArray {
    let mut markers = vec![Marker {
        header: header.clone(),
        ns: "grasps".into(),
        action: Marker::DELETEALL as i32,
        ..Default::default()
    }];
    for (i, g) in grasps.iter().enumerate() {
        let [x, y, z] = g.position_m;
        let (c, s) = (g.candidate.angle_rad.cos(), g.candidate.angle_rad.sin());
        let half = g.candidate.width_m / 2.0;
        let color = ColorRGBA {
            r: 1.0 - g.quality,
            g: g.quality,
            b: 0.0,
            a: 1.0,
        };
        let base = Marker {
            header: header.clone(),
            ns: "grasps".into(),
            action: Marker::ADD as i32,
            pose: Pose {
                orientation: Quaternion {
                    w: 1.0,
                    ..Default::default()
                },
                ..Default::default()
            },
            color,
            ..Default::default()
        };
        // The approach: the grasp frame's z axis.
        let [qx, qy, qz, qw] = g.orientation_xyzw;
        let approach = [
            2.0 * (qx * qz + qw * qy),
            2.0 * (qy * qz - qw * qx),
            1.0 - 2.0 * (qx * qx + qy * qy),
        ];
        markers.push(Marker {
            id: 2 * i as i32,
            type_: Marker::ARROW as i32,
            scale: Vector3 {
                x: 0.004,
                y: 0.008,
                z: 0.01,
            },
            points: vec![
                Point {
                    x: x - 0.06 * approach[0],
                    y: y - 0.06 * approach[1],
                    z: z - 0.06 * approach[2],
                },
                Point { x, y, z },
            ],
            ..base.clone()
        });
        if g.gripper == Gripper::Suction {
            markers.push(Marker {
                id: 2 * i as i32 + 1,
                type_: Marker::CYLINDER as i32,
                pose: pose_of(g),
                scale: Vector3 {
                    x: 0.024,
                    y: 0.024,
                    z: 0.002,
                },
                ..base
            });
            continue;
        }
        markers.push(Marker {
            id: 2 * i as i32 + 1,
            type_: Marker::LINE_LIST as i32,
            scale: Vector3 {
                x: 0.003,
                ..Default::default()
            },
            points: vec![
                Point {
                    x: x - half * c,
                    y: y - half * s,
                    z,
                },
                Point {
                    x: x + half * c,
                    y: y + half * s,
                    z,
                },
            ],
            ..base
        });
    }
    MarkerArray { markers }
}

pub fn rgb8_message(header: &Header, rgb: &RgbImage) -> Image {
    image_message(header, (rgb.width, rgb.height), "rgb8", 3, rgb.data.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intrinsics_need_a_calibrated_k() {
        let mut info = CameraInfo {
            width: 640,
            height: 480,
            ..Default::default()
        };
        assert_eq!(intrinsics(&info), None);
        info.k = vec![500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0];
        let k = intrinsics(&info).unwrap();
        assert_eq!(
            (k.fx_px, k.fy_px, k.cx_px, k.cy_px),
            (500.0, 510.0, 320.0, 240.0)
        );
    }

    #[test]
    fn outputs_copy_the_header() {
        let header = Header {
            stamp: Time {
                sec: 12,
                nanosec: 345,
            },
            frame_id: "camera_color_optical_frame".into(),
        };
        let msg = mono8_message(
            &header,
            &MonoImage {
                width: 2,
                height: 1,
                data: vec![1, 2],
            },
        );
        assert_eq!(msg.header, header);
        assert_eq!((msg.step, msg.encoding.as_str()), (2, "mono8"));
        assert_eq!(stamp_ns(&header.stamp), 12_000_000_345);
    }
}
