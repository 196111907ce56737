"""Reads a bag written by perception's scene::bag::BagWriter with two independent decoders and
checks that they agree with each other and with the bag's own bookkeeping.

- rosbags (pure Python): opens the bag folder as rosbag2 does (metadata.yaml, then the MCAP
  file's summary and LZ4 chunks) and deserialises with its Jazzy type store, perception_msgs
  registered from this repository's .msg files.
- rclpy: deserialises the same raw CDR bytes with the generated C type support, the code path
  of `ros2 bag play` and of the node itself.

Plain functions (no pytest fixtures) so pytest tests and ad-hoc scripts can both call
`check_bag(path)`. Needs the environment of `. scripts/env.sh` for rclpy and perception_msgs.
"""
import array
import importlib
from collections import Counter
from pathlib import Path

import numpy as np
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

ROOT = Path(__file__).resolve().parents[2]
PERCEPTION_MSGS = ROOT / 'perception_msgs' / 'msg'

# Topic -> type, as scene::bag writes them (absolute names, the node's default remappings).
TOPIC_TYPES = {
    '/camera/color/image_raw': 'sensor_msgs/msg/Image',
    '/camera/aligned_depth_to_color/image_raw': 'sensor_msgs/msg/Image',
    '/camera/color/camera_info': 'sensor_msgs/msg/CameraInfo',
    '/ground_truth/segmentation': 'sensor_msgs/msg/Image',
    '/ground_truth/instances': 'sensor_msgs/msg/Image',
    '/ground_truth/camera_pose': 'geometry_msgs/msg/PoseStamped',
    '/ground_truth/grasps': 'perception_msgs/msg/GraspArray',
}

# Image topic -> (encoding, bytes per pixel, numpy dtype of a pixel channel, channels).
IMAGE_LAYOUTS = {
    '/camera/color/image_raw': ('rgb8', 3, np.uint8, 3),
    '/camera/aligned_depth_to_color/image_raw': ('16UC1', 2, np.dtype('<u2'), 1),
    '/ground_truth/segmentation': ('mono8', 1, np.uint8, 1),
    '/ground_truth/instances': ('mono16', 2, np.dtype('<u2'), 1),
}

# Topics whose header carries the cell frame instead of the camera optical frame.
CELL_FRAME_TOPICS = {'/ground_truth/camera_pose'}


def make_typestore():
    """The ROS 2 Jazzy type store with every perception_msgs type added."""
    typestore = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for msg_path in sorted(PERCEPTION_MSGS.glob('*.msg')):
        msgtype = f'perception_msgs/msg/{msg_path.stem}'
        types.update(get_types_from_msg(msg_path.read_text(), msgtype))
    typestore.register(types)
    return typestore


def rclpy_class(msgtype):
    """The generated Python class of 'pkg/msg/Type'."""
    package, _, name = msgtype.split('/')
    return getattr(importlib.import_module(f'{package}.msg'), name)


def assert_same(rosbags_value, rclpy_value, where):
    """Field-by-field equality of a rosbags message and an rclpy message, recursively.
    Primitive arrays compare element-wise with dtype; floats compare exactly, as both decoders
    read the same IEEE bytes."""
    if hasattr(rclpy_value, 'get_fields_and_field_types'):
        for field in rclpy_value.get_fields_and_field_types():
            assert_same(getattr(rosbags_value, field), getattr(rclpy_value, field),
                        f'{where}.{field}')
    elif isinstance(rclpy_value, (array.array, np.ndarray)):
        ours, theirs = np.asarray(rosbags_value), np.asarray(rclpy_value)
        assert ours.dtype == theirs.dtype, f'{where}: dtype {ours.dtype} vs {theirs.dtype}'
        assert np.array_equal(ours, theirs), f'{where}: arrays differ'
    elif isinstance(rclpy_value, (list, tuple)):
        assert len(rosbags_value) == len(rclpy_value), (
            f'{where}: {len(rosbags_value)} vs {len(rclpy_value)} elements')
        for i, (ours, theirs) in enumerate(zip(rosbags_value, rclpy_value)):
            assert_same(ours, theirs, f'{where}[{i}]')
    else:
        assert rosbags_value == rclpy_value, f'{where}: {rosbags_value!r} vs {rclpy_value!r}'


def check_schema(connection, typestore):
    """The ros2msg schema stored for a topic parses to the same definitions as the type store:
    a reader with no message packages decodes the bag from the file alone."""
    assert connection.msgdef.format.name == 'MSG', f'{connection.topic}: schema is not ros2msg'
    parsed = get_types_from_msg(connection.msgdef.data, connection.msgtype)
    for name, definition in parsed.items():
        assert definition == typestore.fielddefs[name], (
            f'{connection.topic}: schema of {name} differs')
    return sorted(parsed)


def stamp_ns(header):
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def check_image(topic, msg):
    encoding, bytes_per_pixel, dtype, channels = IMAGE_LAYOUTS[topic]
    assert msg.encoding == encoding, f'{topic}: encoding {msg.encoding!r}'
    assert msg.is_bigendian == 0, f'{topic}: is_bigendian {msg.is_bigendian}'
    assert msg.step == msg.width * bytes_per_pixel, f'{topic}: step {msg.step}'
    assert len(msg.data) == msg.step * msg.height, f'{topic}: {len(msg.data)} data bytes'
    pixels = np.frombuffer(np.asarray(msg.data, dtype=np.uint8).tobytes(), dtype=dtype)
    shape = (msg.height, msg.width, channels) if channels > 1 else (msg.height, msg.width)
    return {
        'encoding': msg.encoding,
        'width': msg.width,
        'height': msg.height,
        'step': msg.step,
        'is_bigendian': msg.is_bigendian,
        'pixels': pixels.reshape(shape),
    }


def check_camera_info(msg, color_image):
    assert (msg.width, msg.height) == (color_image.width, color_image.height), 'camera_info size'
    assert msg.distortion_model == 'plumb_bob'
    assert list(msg.d) == [0.0] * 5
    k = np.asarray(msg.k).reshape(3, 3)
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    assert np.array_equal(k, [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]), f'K {k}'
    assert np.array_equal(np.asarray(msg.r).reshape(3, 3), np.eye(3)), 'R is not identity'
    assert np.array_equal(np.asarray(msg.p).reshape(3, 4), np.hstack([k, np.zeros((3, 1))])), 'P'
    assert (msg.binning_x, msg.binning_y) == (0, 0)
    roi = msg.roi
    assert (roi.x_offset, roi.y_offset, roi.height, roi.width) == (0, 0, 0, 0), 'roi'
    assert not roi.do_rectify, 'roi.do_rectify'
    return {'width': msg.width, 'height': msg.height,
            'fx': float(fx), 'fy': float(fy), 'cx': float(cx), 'cy': float(cy)}


def pose_values(pose):
    return {
        'position_m': [pose.position.x, pose.position.y, pose.position.z],
        'orientation_xyzw': [pose.orientation.x, pose.orientation.y, pose.orientation.z,
                             pose.orientation.w],
    }


def grasp_values(grasp):
    return {
        'gripper_type': grasp.gripper_type,
        **pose_values(grasp.pose),
        'quality': grasp.quality,
        'width_m': grasp.width_m,
        'center_x_px': grasp.center_x_px,
        'center_y_px': grasp.center_y_px,
        'angle_rad': grasp.angle_rad,
        'approach_depth_m': grasp.approach_depth_m,
        'instance_id': grasp.instance_id,
    }


def check_bag(path):
    """Reads every message of the bag folder `path` with rosbags and with rclpy, asserts they
    agree and that the bag is consistent, and returns

    {'message_count': int, 'frame_count': int, 'counts': {topic: int},
     'start_time_ns': int, 'duration_ns': int, 'camera_frame_id': str, 'cell_frame_id': str,
     'schema_types': {topic: [type names in its schema]},
     'first_frame': {'stamp_ns': int, topic: decoded values}}

    where an image's values hold 'pixels' as a numpy array (height, width[, 3]).
    """
    typestore = make_typestore()
    counts = Counter()
    stamps = {}  # topic -> [stamp_ns per message, in order]
    frame_ids = {}  # topic -> {frame_id}
    first = {}  # topic -> rosbags message of the first frame
    with Reader(Path(path)) as reader:
        assert reader.ros_distro == 'jazzy', f'ros_distro {reader.ros_distro!r}'
        topics = {connection.topic: connection for connection in reader.connections}
        assert {topic: c.msgtype for topic, c in topics.items()} == TOPIC_TYPES, (
            f'topics {sorted(topics)}')
        schema_types = {topic: check_schema(c, typestore) for topic, c in topics.items()}
        metadata_counts = {topic: c.msgcount for topic, c in topics.items()}
        for connection, timestamp, rawdata in reader.messages():
            topic = connection.topic
            ours = typestore.deserialize_cdr(rawdata, connection.msgtype)
            theirs = deserialize_message(bytes(rawdata), rclpy_class(connection.msgtype))
            assert_same(ours, theirs, f'{topic}#{counts[topic]}')
            assert stamp_ns(ours.header) == timestamp, f'{topic}: log time is not the stamp'
            counts[topic] += 1
            stamps.setdefault(topic, []).append(timestamp)
            frame_ids.setdefault(topic, set()).add(ours.header.frame_id)
            first.setdefault(topic, ours)
        message_count, start_time_ns, duration_ns = (
            reader.message_count, reader.start_time, reader.duration - 1)

    assert dict(counts) == metadata_counts, f'counts {dict(counts)} vs metadata {metadata_counts}'
    assert sum(counts.values()) == message_count
    frame_count = counts['/camera/color/image_raw']
    assert set(counts.values()) == {frame_count}, f'topics differ in message count: {dict(counts)}'
    frame_stamps = stamps['/camera/color/image_raw']
    assert all(s == frame_stamps for s in stamps.values()), 'topics differ in stamps'
    assert frame_stamps == sorted(set(frame_stamps)), 'frame stamps do not increase'
    assert (start_time_ns, duration_ns) == (frame_stamps[0], frame_stamps[-1] - frame_stamps[0])
    assert all(len(ids) == 1 for ids in frame_ids.values()), f'frame_ids change: {frame_ids}'
    cell_frame_id = next(iter(frame_ids['/ground_truth/camera_pose']))
    camera_frame_ids = {
        next(iter(ids)) for topic, ids in frame_ids.items() if topic not in CELL_FRAME_TOPICS}
    assert len(camera_frame_ids) == 1, f'camera topics differ in frame_id: {camera_frame_ids}'

    color = first['/camera/color/image_raw']
    first_frame = {'stamp_ns': frame_stamps[0]}
    for topic in IMAGE_LAYOUTS:
        image = first[topic]
        assert (image.width, image.height) == (color.width, color.height), f'{topic}: size'
        first_frame[topic] = check_image(topic, image)
    first_frame['/camera/color/camera_info'] = check_camera_info(
        first['/camera/color/camera_info'], color)
    first_frame['/ground_truth/camera_pose'] = pose_values(first['/ground_truth/camera_pose'].pose)
    first_frame['/ground_truth/grasps'] = [
        grasp_values(grasp) for grasp in first['/ground_truth/grasps'].grasps]

    return {
        'message_count': message_count,
        'frame_count': frame_count,
        'counts': dict(counts),
        'start_time_ns': start_time_ns,
        'duration_ns': duration_ns,
        'camera_frame_id': camera_frame_ids.pop(),
        'cell_frame_id': cell_frame_id,
        'schema_types': schema_types,
        'first_frame': first_frame,
    }
