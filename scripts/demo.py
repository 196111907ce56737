#!/usr/bin/env python3
"""Demo: start perception_node as the launch file does, replay the committed sample bag
(data/sample_bin_picking: 30 synthetic bin-picking frames with ground truth) into it through
rclpy, record every output topic to demo_out/outputs_bag (rosbag2, MCAP), write masks, overlays,
depth estimates and grasps as PNG files next to the ground truth, and print each head's quality against the bag's ground truth (segmentation IoU,
depth AbsRel/RMSE against the bag's depth camera) and the node's latency.

Run through `make demo` (it sets up the machine and the environment first). The node runs its
default models: models/unet_bin_seg and models/depth_bin (trained on generated scenes at
160x120).
"""
import importlib
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
import yaml
from PIL import Image as PilImage
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from perception_msgs.msg import GraspArray
from PIL import ImageDraw
from sensor_msgs.msg import CameraInfo, Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'tests'))
from conftest import NodeProcess  # noqa: E402
from ros_client import Client  # noqa: E402

OUT = ROOT / 'demo_out'
BAG = ROOT / 'data' / 'sample_bin_picking'
INPUTS = {'image': '/camera/color/image_raw', 'depth': '/camera/aligned_depth_to_color/image_raw',
          'camera_info': '/camera/color/camera_info'}
GROUND_TRUTH = '/ground_truth/segmentation'
GROUND_TRUTH_GRASPS = '/ground_truth/grasps'
# The bag labels objects by shape (background, bin, box, cylinder, prism, boundary); the
# shipped model has background, bin, object, boundary.
GT_TO_MODEL = np.array([0, 1, 2, 2, 2, 3], np.uint8)
MODEL_CLASSES = ['background', 'bin', 'object', 'boundary']


def read_frames():
    """The bag's messages grouped by stamp, each deserialised with rclpy as `ros2 bag play`
    would publish it."""
    types = {'sensor_msgs/msg/Image': Image, 'sensor_msgs/msg/CameraInfo': CameraInfo,
             'perception_msgs/msg/GraspArray': GraspArray}
    frames = {}
    with Reader(BAG) as reader:
        for connection, stamp_ns, raw in reader.messages():
            if connection.msgtype in types:
                msg = deserialize_message(bytes(raw), types[connection.msgtype])
                frames.setdefault(stamp_ns, {})[connection.topic] = msg
    return [frames[t] for t in sorted(frames)]


def pixels(msg):
    channels = 3 if msg.encoding == 'rgb8' else 1
    data = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, -1)
    return data if channels == 3 else data[:, :, 0]


# Per gripper type (0 parallel jaw, 1 suction): successful and all labelled candidates seen.
BASE_RATE = {0: [0, 0], 1: [0, 0]}


def count_grasp_agreement(ranked, labels, gripper):
    """For the node's grasps of one gripper type: how many, how many labelled candidates of the
    bag lie nearby (parallel jaw: centre within 4 px, closing direction within 20 degrees;
    suction: contact within 6 px), how many of those the generator's analytic rule calls
    successful (quality >= 0.5)."""
    ranked = [g for g in ranked if g.gripper_type == gripper]
    labels = [lab for lab in labels if lab.gripper_type == gripper]
    near = good = 0
    for g in ranked:
        if gripper == 0:
            close = [lab for lab in labels
                     if np.hypot(lab.center_x_px - g.center_x_px, lab.center_y_px - g.center_y_px) < 4.0
                     and min((lab.angle_rad - g.angle_rad) % np.pi, np.pi - (lab.angle_rad - g.angle_rad) % np.pi)
                     < np.radians(20)]
        else:
            close = [lab for lab in labels
                     if np.hypot(lab.center_x_px - g.center_x_px, lab.center_y_px - g.center_y_px) < 6.0]
        near += len(close)
        good += sum(lab.quality >= 0.5 for lab in close)
    BASE_RATE[gripper][0] += sum(lab.quality >= 0.5 for lab in labels)
    BASE_RATE[gripper][1] += len(labels)
    return np.array([len(ranked), near, good])


def draw_grasps(overlay, ranked, info):
    """The overlay with each grasp drawn, red (quality 0.5) to green (1): a parallel-jaw grasp
    as its jaw line (its opening at the grasp depth) and centre, a suction grasp as its cup."""
    image = PilImage.fromarray(overlay.copy())
    draw = ImageDraw.Draw(image)
    fx = info.k[0]
    for g in reversed(ranked):
        q = (g.quality - 0.5) * 2
        color = (int(255 * (1 - q)), int(255 * q), 0)
        if g.gripper_type == 1:
            # Suction: the 12 mm cup's outline around the contact.
            r = 0.012 * fx / max(g.approach_depth_m, 1e-3)
            draw.ellipse([g.center_x_px - r, g.center_y_px - r, g.center_x_px + r, g.center_y_px + r],
                         outline=color, width=2)
            continue
        half = g.width_m * fx / max(g.approach_depth_m, 1e-3) / 2
        dx, dy = half * np.cos(g.angle_rad), half * np.sin(g.angle_rad)
        draw.line([(g.center_x_px - dx, g.center_y_px - dy), (g.center_x_px + dx, g.center_y_px + dy)],
                  fill=color, width=2)
        draw.ellipse([g.center_x_px - 2, g.center_y_px - 2, g.center_x_px + 2, g.center_y_px + 2], fill=color)
    return image


OUTPUT_TYPES = {'/segmentation/mask': 'sensor_msgs/msg/Image', '/segmentation/overlay': 'sensor_msgs/msg/Image',
                '/segmentation/instances': 'sensor_msgs/msg/Image',
                '/detections': 'perception_msgs/msg/Detection2DArray', '/depth/estimated': 'sensor_msgs/msg/Image',
                '/grasps': 'perception_msgs/msg/GraspArray', '/grasps/poses': 'geometry_msgs/msg/PoseArray',
                '/grasps/markers': 'visualization_msgs/msg/MarkerArray',
                '/diagnostics': 'diagnostic_msgs/msg/DiagnosticArray'}


class Recorder:
    """Records every output of the node as `ros2 bag record` would: serialised messages with
    their receive times, written at the end to an MCAP rosbag2 with rosbags."""

    def __init__(self, node):
        self.messages = []
        for topic, msgtype in OUTPUT_TYPES.items():
            package, _, name = msgtype.split('/')
            cls = getattr(importlib.import_module(f'{package}.msg'), name)
            node.create_subscription(cls, topic, lambda msg, t=topic: self.messages.append(
                (t, time.time_ns(), serialize_message(msg))), 100)

    def write(self, path):
        store = get_typestore(Stores.ROS2_JAZZY)
        for name in ('Detection2D', 'Detection2DArray', 'Grasp', 'GraspArray'):
            text = (ROOT / 'perception_msgs' / 'msg' / f'{name}.msg').read_text()
            store.register(get_types_from_msg(text, f'perception_msgs/msg/{name}'))
        shutil.rmtree(path, ignore_errors=True)
        with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
            connections = {topic: writer.add_connection(topic, msgtype, typestore=store)
                           for topic, msgtype in OUTPUT_TYPES.items()}
            for topic, stamp, raw in sorted(self.messages, key=lambda m: m[1]):
                writer.write(connections[topic], stamp, raw)
        return len(self.messages)


def main():
    OUT.mkdir(exist_ok=True)
    frames = read_frames()
    log_path = OUT / 'node.log'
    node_process = NodeProcess(log_path, **INPUTS)
    rclpy.init()
    client = Client(rclpy, '', INPUTS)
    confusion = np.zeros((4, 4), np.int64)
    latencies_ms = []
    depths, grasps = [], []
    client.node.create_subscription(Image, '/depth/estimated', depths.append, 100)
    client.node.create_subscription(GraspArray, '/grasps', grasps.append, 100)
    recorder = Recorder(client.node)
    depth_errors = []
    # Per gripper type: top grasps, labelled neighbours, successful ones.
    grasp_counts = {0: np.zeros(3, np.int64), 1: np.zeros(3, np.int64)}
    try:
        client.wait_connected(node_process, timeout=60)
        for index, frame in enumerate(frames):
            image = frame[INPUTS['image']]
            client.info_pub.publish(frame[INPUTS['camera_info']])
            client.depth_pub.publish(frame[INPUTS['depth']])
            sent = time.monotonic()
            # The node's default inputs are best effort (sensor data): resend until answered.
            client.publish_until(client.image_pub, image, lambda: client.masks_at(image.header.stamp),
                                 f'the mask of frame {index}', resend_s=5.0, node_process=node_process)
            latencies_ms.append((time.monotonic() - sent) * 1000)
            client.wait_for(lambda: client.overlays_at(image.header.stamp), f'the overlay of frame {index}',
                            node_process=node_process)
            stamp = (image.header.stamp.sec, image.header.stamp.nanosec)
            client.wait_for(lambda: any((d.header.stamp.sec, d.header.stamp.nanosec) == stamp for d in depths),
                            f'the depth estimate of frame {index}', node_process=node_process)
            estimate = next(d for d in depths if (d.header.stamp.sec, d.header.stamp.nanosec) == stamp)
            estimate = np.frombuffer(bytes(estimate.data), np.float32).reshape(estimate.height, estimate.width)
            sensor = frame[INPUTS['depth']]
            measured = np.frombuffer(bytes(sensor.data), np.uint16).reshape(sensor.height, sensor.width) / 1000.0
            valid = measured > 0
            depth_errors.append((estimate[valid] - measured[valid], measured[valid]))
            client.wait_for(lambda: any((g.header.stamp.sec, g.header.stamp.nanosec) == stamp for g in grasps),
                            f'the grasps of frame {index}', node_process=node_process)
            ranked = next(g for g in grasps if (g.header.stamp.sec, g.header.stamp.nanosec) == stamp).grasps
            for gripper in grasp_counts:
                grasp_counts[gripper] += count_grasp_agreement(ranked, frame[GROUND_TRUTH_GRASPS].grasps, gripper)
            mask = pixels(client.masks_at(image.header.stamp)[0])
            truth = GT_TO_MODEL[pixels(frame[GROUND_TRUTH])]
            np.add.at(confusion, (truth.ravel(), np.minimum(mask.ravel(), 3)), 1)
            if index < 6:
                overlay = pixels(client.overlays_at(image.header.stamp)[0])
                palette = np.array([[0, 0, 0], [40, 90, 200], [230, 160, 30], [255, 255, 255]], np.uint8)
                # Depth as grey, 0.5 m white .. 1.0 m black, estimate beside the sensor's.
                grey = lambda d: np.repeat((np.clip((1.0 - d) / 0.5, 0, 1) * 255).astype(np.uint8)[:, :, None], 3, 2)
                PilImage.fromarray(np.concatenate([pixels(image), overlay, palette[truth]], 1)).save(
                    OUT / f'frame{index:02}_input_overlay_truth.png')
                PilImage.fromarray(np.concatenate([grey(estimate), grey(measured)], 1)).save(
                    OUT / f'frame{index:02}_depth_estimate_sensor.png')
                draw_grasps(overlay, ranked, frame[INPUTS['camera_info']]).save(OUT / f'frame{index:02}_grasps.png')
        diagnostics = client.latest_diagnostics()
        recorded = recorder.write(OUT / 'outputs_bag')
    finally:
        client.destroy()
        rclpy.shutdown()
        node_process.stop()
    union = confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    iou = np.diag(confusion) / np.maximum(union, 1)
    print(f'perception demo: {len(frames)} frames of {BAG.relative_to(ROOT)} replayed, '
          f'{len(latencies_ms)} masks received')
    model = Path(diagnostics.get('segmentation_model', '?')).name
    print(f'segmentation vs ground truth, model {model}:')
    print('  ' + ', '.join(f'{name} IoU {v:.3f}' for name, v in zip(MODEL_CLASSES, iou)) +
          f'; mIoU {iou.mean():.3f}')
    error = np.concatenate([e for e, _ in depth_errors])
    measured = np.concatenate([m for _, m in depth_errors])
    params = yaml.safe_load((ROOT / 'config' / 'perception.yaml').read_text())['/**']['ros__parameters']
    print(f'depth estimate vs the bag\'s depth camera, model {params["depth_model"]}: '
          f'AbsRel {np.mean(np.abs(error) / measured):.3f}, RMSE {np.sqrt(np.mean(error ** 2)) * 1000:.1f} mm, '
          f'delta<1.25 {np.mean(np.maximum((error + measured) / measured, measured / np.maximum(error + measured, 1e-6)) < 1.25):.3f}')
    for gripper, name, nearby in ((0, 'parallel-jaw', 'within 4 px and 20 deg'), (1, 'suction', 'within 6 px')):
        top, near, good = grasp_counts[gripper]
        base_good, base_all = BASE_RATE[gripper]
        print(f'{name} grasps: {top} published over {len(frames)} frames ({top / len(frames):.1f} per frame, '
              f'quality >= 0.5); {near} labelled candidates of the bag {nearby}, {good} of them successful '
              f'({good / max(near, 1):.2f}; all labelled {name} candidates: {base_good / max(base_all, 1):.2f})')
    print(f'  publish-to-mask latency: median {np.median(latencies_ms):.1f} ms, '
          f'max {np.max(latencies_ms):.1f} ms (includes resends of lost best-effort frames)')
    for key in ('frames_processed', 'latency_preprocess_mean_ms', 'latency_inference_mean_ms',
                'latency_postprocess_mean_ms', 'latency_end_to_end_mean_ms', 'device'):
        if key in diagnostics:
            print(f'  node {key}: {diagnostics[key]}')
    print(f'outputs recorded: {recorded} messages in {OUT}/outputs_bag (rosbag2, MCAP; `ros2 bag info` reads it)')
    print(f'images: {OUT}/frame*_input_overlay_truth.png (input | overlay | ground truth), '
          f'{OUT}/frame*_depth_estimate_sensor.png, {OUT}/frame*_grasps.png; node log: {log_path}')


if __name__ == '__main__':
    main()
