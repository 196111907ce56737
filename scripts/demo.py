#!/usr/bin/env python3
"""Demo: start perception_node as the launch file does, publish a handful of synthetic camera
frames through rclpy, receive the segmentation overlays and write them as PNG files.

Run through `make demo` (it sets up the machine and the environment first). Until trained
models land the node runs an untrained U-Net: the overlays show the plumbing, not quality.
"""
import sys
from pathlib import Path

import numpy as np
import rclpy
from PIL import Image as PilImage
from sensor_msgs.msg import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'tests'))
from conftest import NodeProcess  # noqa: E402
from ros_client import Client  # noqa: E402

OUT = ROOT / 'demo_out'
FRAMES = 5
WIDTH, HEIGHT = 320, 240
INPUTS = {'image': '/demo/image', 'depth': '/demo/depth', 'camera_info': '/demo/camera_info'}


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
    node_process = NodeProcess(log_path, **INPUTS)
    rclpy.init()
    client = Client(rclpy, '', INPUTS)
    written = []
    try:
        client.wait_connected(node_process, timeout=60)
        for index in range(FRAMES):
            img = scene(index)
            PilImage.fromarray(img).save(OUT / f'frame{index}_input.png')
            msg = to_msg(img, index)
            # The node's default inputs are best effort (sensor data): resend until answered.
            client.publish_until(client.image_pub, msg, lambda: client.overlays_for(msg.header.stamp.sec),
                                 f'the overlay of frame {index}', node_process=node_process)
            overlay = client.overlays_for(msg.header.stamp.sec)[0]
            pixels = np.frombuffer(bytes(overlay.data), np.uint8).reshape(overlay.height, overlay.width, 3)
            path = OUT / f'frame{index}_overlay.png'
            PilImage.fromarray(pixels).save(path)
            written.append(path)
    finally:
        client.destroy()
        rclpy.shutdown()
        node_process.stop()
    print(f'perception demo: {len(written)} overlays received from perception_node')
    for path in written:
        print(f'  {path}')
    print(f'inputs beside them (frame*_input.png); node log: {log_path}')


if __name__ == '__main__':
    main()
