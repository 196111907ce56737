"""Bags for the replay tests, written with the rosbags library (MCAP and sqlite3), and a player
that publishes a bag's camera topics through rclpy at the recorded rate or a multiple of it,
optionally with /clock, as `ros2 bag play [--rate R] [--clock]` does."""
import shutil
import time
from pathlib import Path

from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image

ROOT = Path(__file__).resolve().parent.parent
INPUTS = {'image': '/camera/color/image_raw', 'depth': '/camera/aligned_depth_to_color/image_raw',
          'camera_info': '/camera/color/camera_info'}
TYPES = {INPUTS['image']: Image, INPUTS['depth']: Image, INPUTS['camera_info']: CameraInfo}


def typestore():
    """ROS 2 Jazzy's types plus this repository's perception_msgs."""
    store = get_typestore(Stores.ROS2_JAZZY)
    for name in ('Detection2D', 'Detection2DArray', 'Grasp', 'GraspArray'):
        text = (ROOT / 'perception_msgs' / 'msg' / f'{name}.msg').read_text()
        store.register(get_types_from_msg(text, f'perception_msgs/msg/{name}'))
    return store


def rewrite(source, target, storage):
    """Copies every topic of bag `source` into a new bag `target` written by rosbags with
    `storage` ('mcap' or 'sqlite3'), messages in the source's order and log times."""
    plugin = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}[storage]
    store = typestore()
    shutil.rmtree(target, ignore_errors=True)
    with Reader(source) as reader, Writer(target, version=9, storage_plugin=plugin) as writer:
        connections = {c.topic: writer.add_connection(c.topic, c.msgtype, typestore=store)
                       for c in reader.connections}
        for connection, log_time, raw in reader.messages():
            writer.write(connections[connection.topic], log_time, raw)
    return target


def read_inputs(bag):
    """The bag's camera messages in order: (log time ns, topic, rclpy message)."""
    messages = []
    with Reader(bag) as reader:
        for connection, log_time, raw in reader.messages():
            if connection.topic in TYPES:
                messages.append((log_time, connection.topic,
                                 deserialize_message(bytes(raw), TYPES[connection.topic])))
    return messages


class Player:
    """Publishes a bag's camera messages with reliable QoS, spinning `executor` between them so
    the test's subscriptions keep receiving."""

    def __init__(self, node, executor, bag, clock=False):
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.publishers = {topic: node.create_publisher(cls, topic, qos) for topic, cls in TYPES.items()}
        self.clock = node.create_publisher(Clock, '/clock', 10) if clock else None
        self.executor = executor
        self.messages = read_inputs(bag)
        # Wall time each image was published, by header stamp (sec, nanosec).
        self.sent = {}

    def connected(self):
        return all(p.get_subscription_count() > 0 for p in self.publishers.values())

    def play(self, rate=1.0):
        """Publishes every message at its recorded offset divided by `rate`; returns the
        wall time taken."""
        start_log = self.messages[0][0]
        start = time.monotonic()
        for log_time, topic, msg in self.messages:
            due = start + (log_time - start_log) / 1e9 / rate
            while True:
                left = due - time.monotonic()
                if left <= 0:
                    break
                self.executor.spin_once(timeout_sec=min(left, 0.01))
            if self.clock is not None:
                clock = Clock()
                clock.clock.sec, clock.clock.nanosec = divmod(log_time, 1_000_000_000)
                self.clock.publish(clock)
            self.publishers[topic].publish(msg)
            if topic == INPUTS['image']:
                self.sent[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = time.monotonic()
        return time.monotonic() - start

    def images(self):
        return [msg for _, topic, msg in self.messages if topic == INPUTS['image']]
