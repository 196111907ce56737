#!/usr/bin/env python3
"""Demo: start perception_node as the launch file does, publish a handful of synthetic camera
frames through rclpy, receive the segmentation overlays and write them as PNG files.

Run through `make demo` (it sets up the machine and the environment first). Until trained
models land the node runs an untrained U-Net: the overlays show the plumbing, not quality.
"""
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from PIL import Image as PilImage
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'tests'))
from conftest import NodeProcess  # noqa: E402

OUT = ROOT / 'demo_out'
FRAMES = 5
WIDTH, HEIGHT = 320, 240


def scene(index):
    """A grey bin on a dark floor with a few coloured boxes, a different layout per frame."""
    rng = np.random.default_rng(index)
    img = np.full((HEIGHT, WIDTH, 3), 40, np.uint8)
    img[30:210, 40:280] = (150, 150, 155)
    for _ in range(4):
        w, h = rng.integers(30, 70, 2)
        x, y = rng.integers(50, 270 - w), rng.integers(40, 200 - h)
        img[y:y + h, x:x + w] = rng.integers(60, 255, 3)
    return img


def to_msg(img, index):
    msg = Image()
    msg.header.stamp.sec = 1_700_000_000 + index
    msg.header.frame_id = 'camera_color_optical_frame'
    msg.height, msg.width = img.shape[:2]
    msg.encoding, msg.step = 'rgb8', img.shape[1] * 3
    msg.data = img.tobytes()
    return msg


def main():
    OUT.mkdir(exist_ok=True)
    log_path = OUT / 'node.log'
    node_process = NodeProcess(log_path, image='/demo/image', depth='/demo/depth',
                               camera_info='/demo/camera_info')
    rclpy.init()
    client = rclpy.create_node('perception_demo')
    overlays = []
    client.create_subscription(Image, '/segmentation/overlay', overlays.append, 10)
    publisher = client.create_publisher(Image, '/demo/image', QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    written = []
    try:
        deadline = time.monotonic() + 60
        while publisher.get_subscription_count() == 0 or client.count_publishers('/segmentation/overlay') == 0:
            if node_process.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f'perception_node did not come up; its log:\n{node_process.output()}')
            rclpy.spin_once(client, timeout_sec=0.1)
        for index in range(FRAMES):
            img = scene(index)
            PilImage.fromarray(img).save(OUT / f'frame{index}_input.png')
            publisher.publish(to_msg(img, index))
            before = len(overlays)
            deadline = time.monotonic() + 30
            while len(overlays) == before:
                if time.monotonic() > deadline:
                    raise SystemExit(f'no overlay for frame {index}; node log:\n{node_process.output()}')
                rclpy.spin_once(client, timeout_sec=0.1)
            overlay = overlays[-1]
            pixels = np.frombuffer(bytes(overlay.data), np.uint8).reshape(overlay.height, overlay.width, 3)
            path = OUT / f'frame{index}_overlay.png'
            PilImage.fromarray(pixels).save(path)
            written.append(path)
    finally:
        client.destroy_node()
        rclpy.shutdown()
        node_process.stop()
    print(f'perception demo: {len(written)} overlays received from perception_node')
    for path in written:
        print(f'  {path}')
    print(f'inputs beside them (frame*_input.png); node log: {log_path}')


if __name__ == '__main__':
    main()
