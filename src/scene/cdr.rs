//! CDR encoding of the messages a synthetic bag holds, byte for byte as a ROS 2 Jazzy publisher
//! (rmw_fastrtps_cpp, plain XCDR1 little endian) puts them on the wire and `ros2 bag record`
//! stores them.
//!
//! Layout: a 4-byte encapsulation header, then the fields in .msg order. Each primitive is
//! aligned to its own size, counted from the end of the encapsulation header; strings are a u32
//! length that includes the NUL terminator, the bytes, then NUL; sequences are a u32 element
//! count then the elements; fixed-size arrays have no count. Nothing pads the end.

use thiserror::Error;

use crate::scene::bag::BagGrasp;

/// Representation identifier CDR_LE (0x0001, big endian on the wire) then two option bytes.
const ENCAPSULATION_CDR_LE: [u8; 4] = [0x00, 0x01, 0x00, 0x00];

/// A string or sequence too long for the u32 length CDR puts in front of it.
#[derive(Debug, Error, Clone, PartialEq)]
#[error(
    "{field} would be {len} long, more than the {} a CDR u32 length holds: write smaller frames",
    u32::MAX
)]
pub struct LengthOverflow {
    pub field: &'static str,
    pub len: usize,
}

/// builtin_interfaces/Time: seconds since the epoch and the nanoseconds within that second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub sec: i32,
    pub nanosec: u32,
}

/// The pixel buffer of a sensor_msgs/Image; 16-bit pixels go out little endian
/// (`is_bigendian` 0), whatever the host's byte order.
#[derive(Clone, Copy, Debug)]
pub enum PixelData<'a> {
    U8(&'a [u8]),
    U16(&'a [u16]),
}

impl PixelData<'_> {
    fn byte_len(&self) -> usize {
        match self {
            PixelData::U8(values) => values.len(),
            PixelData::U16(values) => values.len() * 2,
        }
    }
}

/// Appends CDR fields to a message buffer that starts with the encapsulation header.
pub struct CdrWriter {
    bytes: Vec<u8>,
}

impl CdrWriter {
    /// `payload_len`: expected bytes after the encapsulation header, to allocate once.
    pub fn with_capacity(payload_len: usize) -> Self {
        let mut bytes = Vec::with_capacity(ENCAPSULATION_CDR_LE.len() + payload_len);
        bytes.extend_from_slice(&ENCAPSULATION_CDR_LE);
        Self { bytes }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Zero padding up to the next multiple of `alignment` bytes after the encapsulation header.
    fn align(&mut self, alignment: usize) {
        let offset = self.bytes.len() - ENCAPSULATION_CDR_LE.len();
        let padding = (alignment - offset % alignment) % alignment;
        self.bytes.resize(self.bytes.len() + padding, 0);
    }

    pub fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    pub fn bool(&mut self, value: bool) {
        self.u8(u8::from(value));
    }

    pub fn u16(&mut self, value: u16) {
        self.align(2);
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    pub fn u32(&mut self, value: u32) {
        self.align(4);
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    pub fn i32(&mut self, value: i32) {
        self.align(4);
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    pub fn f32(&mut self, value: f32) {
        self.align(4);
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    pub fn f64(&mut self, value: f64) {
        self.align(8);
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    /// A fixed-size array (`float64[9] k`): the elements only, no count.
    pub fn f64_array(&mut self, values: &[f64]) {
        for &value in values {
            self.f64(value);
        }
    }

    /// The u32 element count in front of a sequence (`float64[] d`, `Grasp[] grasps`).
    pub fn sequence_len(&mut self, field: &'static str, len: usize) -> Result<(), LengthOverflow> {
        let count = u32::try_from(len).map_err(|_| LengthOverflow { field, len })?;
        self.u32(count);
        Ok(())
    }

    pub fn string(&mut self, field: &'static str, value: &str) -> Result<(), LengthOverflow> {
        let len_with_nul = value.len() + 1;
        let count = u32::try_from(len_with_nul).map_err(|_| LengthOverflow {
            field,
            len: len_with_nul,
        })?;
        self.u32(count);
        self.bytes.extend_from_slice(value.as_bytes());
        self.bytes.push(0);
        Ok(())
    }

    /// `uint8[] data` of an image: byte count, then the bytes (u16 pixels little endian).
    pub fn pixel_data(
        &mut self,
        field: &'static str,
        pixels: PixelData,
    ) -> Result<(), LengthOverflow> {
        self.sequence_len(field, pixels.byte_len())?;
        match pixels {
            PixelData::U8(values) => self.bytes.extend_from_slice(values),
            PixelData::U16(values) => {
                self.bytes.reserve(values.len() * 2);
                for value in values {
                    self.bytes.extend_from_slice(&value.to_le_bytes());
                }
            }
        }
        Ok(())
    }

    /// std_msgs/Header.
    pub fn header(&mut self, stamp: Stamp, frame_id: &str) -> Result<(), LengthOverflow> {
        self.i32(stamp.sec);
        self.u32(stamp.nanosec);
        self.string("Header.frame_id", frame_id)
    }

    /// geometry_msgs/Pose: Point position, then Quaternion orientation (x, y, z, w).
    pub fn pose(&mut self, position_m: [f64; 3], orientation_xyzw: [f64; 4]) {
        self.f64_array(&position_m);
        self.f64_array(&orientation_xyzw);
    }
}

/// sensor_msgs/Image with no row padding: `step_bytes` is one row's size.
pub fn image(
    stamp: Stamp,
    frame_id: &str,
    width: u32,
    height: u32,
    encoding: &str,
    step_bytes: u32,
    pixels: PixelData,
) -> Result<Vec<u8>, LengthOverflow> {
    let mut cdr = CdrWriter::with_capacity(64 + frame_id.len() + pixels.byte_len());
    cdr.header(stamp, frame_id)?;
    cdr.u32(height);
    cdr.u32(width);
    cdr.string("Image.encoding", encoding)?;
    // is_bigendian: 16-bit pixels are written little endian.
    cdr.u8(0);
    cdr.u32(step_bytes);
    cdr.pixel_data("Image.data", pixels)?;
    Ok(cdr.into_bytes())
}

/// sensor_msgs/CameraInfo of an ideal pinhole camera: plumb_bob with zero distortion, identity
/// rectification, P = [K | 0], no binning, full-image ROI (all zeros).
pub fn camera_info(
    stamp: Stamp,
    frame_id: &str,
    width: u32,
    height: u32,
    [fx_px, fy_px, cx_px, cy_px]: [f64; 4],
) -> Result<Vec<u8>, LengthOverflow> {
    let mut cdr = CdrWriter::with_capacity(400 + frame_id.len());
    cdr.header(stamp, frame_id)?;
    cdr.u32(height);
    cdr.u32(width);
    cdr.string("CameraInfo.distortion_model", "plumb_bob")?;
    let distortion = [0.0; 5];
    cdr.sequence_len("CameraInfo.d", distortion.len())?;
    cdr.f64_array(&distortion);
    cdr.f64_array(&[fx_px, 0.0, cx_px, 0.0, fy_px, cy_px, 0.0, 0.0, 1.0]);
    cdr.f64_array(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    cdr.f64_array(&[
        fx_px, 0.0, cx_px, 0.0, 0.0, fy_px, cy_px, 0.0, 0.0, 0.0, 1.0, 0.0,
    ]);
    // binning_x, binning_y
    cdr.u32(0);
    cdr.u32(0);
    // roi: x_offset, y_offset, height, width, do_rectify
    for _ in 0..4 {
        cdr.u32(0);
    }
    cdr.bool(false);
    Ok(cdr.into_bytes())
}

/// geometry_msgs/PoseStamped.
pub fn pose_stamped(
    stamp: Stamp,
    frame_id: &str,
    position_m: [f64; 3],
    orientation_xyzw: [f64; 4],
) -> Result<Vec<u8>, LengthOverflow> {
    let mut cdr = CdrWriter::with_capacity(80 + frame_id.len());
    cdr.header(stamp, frame_id)?;
    cdr.pose(position_m, orientation_xyzw);
    Ok(cdr.into_bytes())
}

/// perception_msgs/GraspArray (fields in the order of perception_msgs/msg/Grasp.msg).
pub fn grasp_array(
    stamp: Stamp,
    frame_id: &str,
    grasps: &[BagGrasp],
) -> Result<Vec<u8>, LengthOverflow> {
    // A grasp is at most 7 (padding) + 56 (pose) + 24 (floats) + 2 + 1 bytes.
    let mut cdr = CdrWriter::with_capacity(32 + frame_id.len() + grasps.len() * 90);
    cdr.header(stamp, frame_id)?;
    cdr.sequence_len("GraspArray.grasps", grasps.len())?;
    for grasp in grasps {
        cdr.u8(grasp.gripper_type);
        cdr.pose(grasp.position_m, grasp.orientation_xyzw);
        cdr.f32(grasp.quality);
        cdr.f32(grasp.width_m);
        cdr.f32(grasp.center_x_px);
        cdr.f32(grasp.center_y_px);
        cdr.f32(grasp.angle_rad);
        cdr.f32(grasp.approach_depth_m);
        cdr.u16(grasp.instance_id);
    }
    Ok(cdr.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: Stamp = Stamp { sec: 1, nanosec: 2 };

    /// PoseStamped{stamp 1 s 2 ns, frame "ab", position (1, 2, 3), identity orientation},
    /// worked out by hand. rclpy's serialize_message gives the same bytes except the padding
    /// byte, which it leaves uninitialised.
    #[test]
    fn pose_stamped_bytes() {
        let bytes = pose_stamped(STAMP, "ab", [1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 1.0])
            .expect("short frame_id");
        let mut expected = vec![
            0x00, 0x01, 0x00, 0x00, // encapsulation: CDR_LE
            0x01, 0x00, 0x00, 0x00, // stamp.sec
            0x02, 0x00, 0x00, 0x00, // stamp.nanosec
            0x03, 0x00, 0x00, 0x00, // frame_id length, NUL included
            b'a', b'b', 0x00, // frame_id
            0x00, // padding: position.x starts at payload offset 16
        ];
        for value in [1.0f64, 2.0, 3.0, 0.0, 0.0, 0.0, 1.0] {
            expected.extend_from_slice(&value.to_le_bytes());
        }
        assert_eq!(&expected[20..28], &[0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
        assert_eq!(bytes, expected);
    }

    /// A 2x1 mono16 Image: the u8 is_bigendian pushes step to the next multiple of 4, and the
    /// pixels go out little endian.
    #[test]
    fn mono16_image_bytes() {
        let bytes = image(
            STAMP,
            "c",
            2,
            1,
            "mono16",
            4,
            PixelData::U16(&[0x0102, 0x0304]),
        )
        .expect("small image");
        let expected = [
            0x00, 0x01, 0x00, 0x00, // encapsulation
            0x01, 0x00, 0x00, 0x00, // stamp.sec
            0x02, 0x00, 0x00, 0x00, // stamp.nanosec
            0x02, 0x00, 0x00, 0x00, b'c', 0x00, // frame_id
            0x00, 0x00, // padding to 4
            0x01, 0x00, 0x00, 0x00, // height
            0x02, 0x00, 0x00, 0x00, // width
            0x07, 0x00, 0x00, 0x00, b'm', b'o', b'n', b'o', b'1', b'6', 0x00, // encoding
            0x00, // is_bigendian
            0x04, 0x00, 0x00, 0x00, // step
            0x04, 0x00, 0x00, 0x00, // data length
            0x02, 0x01, 0x04, 0x03, // data
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn grasp_elements_align_their_pose_to_8() {
        let grasp = BagGrasp {
            gripper_type: 1,
            position_m: [0.5, 0.0, 0.0],
            orientation_xyzw: [0.0, 0.0, 0.0, 1.0],
            quality: 0.25,
            width_m: 0.0,
            center_x_px: 0.0,
            center_y_px: 0.0,
            angle_rad: 0.0,
            approach_depth_m: 0.0,
            instance_id: 7,
        };
        let bytes = grasp_array(STAMP, "c", &[grasp, grasp]).expect("two grasps");
        // Payload offsets: header 0..14, count 16..20, gripper_type 20, pose 24..80,
        // floats 80..104, instance_id 104..106; the second grasp starts at 106.
        let payload = &bytes[4..];
        assert_eq!(&payload[16..20], &2u32.to_le_bytes());
        assert_eq!(payload[20], 1);
        assert_eq!(&payload[24..32], &0.5f64.to_le_bytes());
        assert_eq!(&payload[80..84], &0.25f32.to_le_bytes());
        assert_eq!(&payload[104..106], &7u16.to_le_bytes());
        assert_eq!(payload[106], 1);
        assert_eq!(&payload[112..120], &0.5f64.to_le_bytes());
        assert_eq!(payload.len(), 106 + 88);
    }

    #[test]
    fn camera_info_is_a_fixed_size_for_a_frame_id() {
        let bytes = camera_info(STAMP, "c", 8, 6, [10.0, 11.0, 4.0, 3.0]).expect("small");
        let payload = &bytes[4..];
        // header 0..14, height, width 16..24, "plumb_bob" 24..38, d count at 40, d 48..88,
        // k 88..160 (fx first, fy at 4, cx at 2, cy at 5).
        assert_eq!(&payload[40..44], &5u32.to_le_bytes());
        assert_eq!(&payload[88..96], &10.0f64.to_le_bytes());
        assert_eq!(&payload[104..112], &4.0f64.to_le_bytes());
        assert_eq!(&payload[120..128], &11.0f64.to_le_bytes());
        // r 160..232, p 232..328, binning 328..336, roi 336..352 + do_rectify.
        assert_eq!(payload.len(), 353);
    }
}
