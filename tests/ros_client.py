"""A real rclpy client for the node: publishes camera topics, collects the node's outputs,
and waits on conditions (discovery, answers) instead of sleeping blindly."""
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

CHANNELS = {'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1}


def image_msg(encoding, width, height, sec, pad=0, frame_id='camera_color_optical_frame', seed=0):
    """A random image in `encoding`, each row followed by `pad` bytes."""
    rng = np.random.default_rng(seed)
    if encoding in ('16UC1', '32FC1'):
        dtype = np.uint16 if encoding == '16UC1' else np.float32
        values = rng.uniform(300, 2000, (height, width))
        if encoding == '32FC1':
            values = values / 1000.0
        rows = values.astype(dtype).view(np.uint8).reshape(height, -1)
    else:
        rows = rng.integers(0, 256, (height, width * CHANNELS[encoding]), dtype=np.uint8)
    rows = np.concatenate([rows, np.full((height, pad), 0xEE, np.uint8)], axis=1)
    msg = Image()
    msg.header.stamp.sec = sec
    msg.header.stamp.nanosec = 500
    msg.header.frame_id = frame_id
    msg.height, msg.width, msg.encoding = height, width, encoding
    msg.is_bigendian = 0
    msg.step = rows.shape[1]
    msg.data = rows.tobytes()
    return msg


def camera_info_msg(width, height, sec, frame_id='camera_color_optical_frame'):
    msg = CameraInfo()
    msg.header.stamp.sec = sec
    msg.header.stamp.nanosec = 500
    msg.header.frame_id = frame_id
    msg.width, msg.height = width, height
    msg.k = [500.0, 0.0, width / 2, 0.0, 500.0, height / 2, 0.0, 0.0, 1.0]
    msg.distortion_model = 'plumb_bob'
    msg.d = [0.0] * 5
    return msg


class Client:
    def __init__(self, rclpy, namespace, inputs):
        self.node = rclpy.create_node('perception_test_client')
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.node.create_publisher(Image, inputs['image'], qos)
        self.depth_pub = self.node.create_publisher(Image, inputs['depth'], qos)
        self.info_pub = self.node.create_publisher(CameraInfo, inputs['camera_info'], qos)
        self.masks, self.overlays, self.diagnostics = [], [], []
        self.mask_sub = self.node.create_subscription(
            Image, f'{namespace}/segmentation/mask', self.masks.append, 100)
        self.overlay_sub = self.node.create_subscription(
            Image, f'{namespace}/segmentation/overlay', self.overlays.append, 100)
        self.diag_sub = self.node.create_subscription(
            DiagnosticArray, '/diagnostics', self.diagnostics.append, 100)

    def destroy(self):
        self.executor.remove_node(self.node)
        self.node.destroy_node()

    def wait_for(self, predicate, what, timeout=30.0, node_process=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if node_process is not None and node_process.process.poll() is not None:
                raise AssertionError(f'node exited ({node_process.process.returncode}) while waiting for '
                                     f'{what}:\n{node_process.output()}')
            self.executor.spin_once(timeout_sec=0.05)
        log = f'\nnode log:\n{node_process.output()}' if node_process else ''
        raise AssertionError(f'timed out after {timeout} s waiting for {what}{log}')

    def publish_until(self, publisher, msg, predicate, what, resend_s=1.0, **wait_args):
        """Publishes `msg`, again every `resend_s` until `predicate` holds. For best-effort
        (sensor-data) inputs: a sample sent before the node's reader has matched this writer is
        lost even though this writer already sees the reader."""
        next_send = [time.monotonic()]

        def answered():
            if predicate():
                return True
            if time.monotonic() >= next_send[0]:
                publisher.publish(msg)
                next_send[0] = time.monotonic() + resend_s
            return False

        self.wait_for(answered, what, **wait_args)

    def wait_connected(self, node_process, timeout=30.0):
        """Discovery in both directions: the node subscribes to our inputs, we to its outputs."""
        self.wait_for(lambda: all(p.get_subscription_count() > 0
                                  for p in (self.image_pub, self.depth_pub, self.info_pub))
                      and self.node.count_publishers(self.mask_sub.topic_name) > 0
                      and self.node.count_publishers(self.overlay_sub.topic_name) > 0,
                      'discovery between the test client and the node', timeout=timeout,
                      node_process=node_process)

    def latest_diagnostics(self):
        """The newest /diagnostics key/values of the perception node, as a dict."""
        for array in reversed(self.diagnostics):
            for status in array.status:
                if 'perception_node' in status.name:
                    return {kv.key: kv.value for kv in status.values}
        return {}

    def masks_at(self, stamp):
        """Masks whose header stamp equals `stamp` (builtin_interfaces/Time) exactly."""
        return [m for m in self.masks if (m.header.stamp.sec, m.header.stamp.nanosec) ==
                (stamp.sec, stamp.nanosec)]

    def overlays_at(self, stamp):
        return [o for o in self.overlays if (o.header.stamp.sec, o.header.stamp.nanosec) ==
                (stamp.sec, stamp.nanosec)]

    def masks_for(self, sec):
        return [m for m in self.masks if m.header.stamp.sec == sec]

    def overlays_for(self, sec):
        return [o for o in self.overlays if o.header.stamp.sec == sec]
