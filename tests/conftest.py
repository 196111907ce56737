"""Fixtures for the node tests: an isolated DDS domain, one rclpy client node, and the node
under test started from the colcon install with the launch file's arguments."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from launch_cmdline import INSTALL, ROOT, LaunchFile  # noqa: E402

# Each test session gets its own DDS domain, so parallel runs on one machine do not mix.
os.environ.setdefault('ROS_DOMAIN_ID', str(random.Random(os.getpid()).randint(1, 100)))

TEST_PARAMS = Path(__file__).resolve().parent / 'node' / 'test_params.yaml'


class NodeProcess:
    """perception_node in its own process, stopped with SIGINT like `ros2 launch` does."""

    def __init__(self, log_path, extra_ros_args=(), **launch_args):
        self.log_path = log_path
        self.command = LaunchFile().command(**launch_args) + list(extra_ros_args)
        self.log = open(log_path, 'w')
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT,
                                        cwd=ROOT)

    def output(self):
        self.log.flush()
        return Path(self.log_path).read_text()

    def stop(self, timeout=20):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f'node ignored SIGINT for {timeout} s:\n{self.output()}')
        self.log.close()
        return self.process.returncode

    def wait_exit(self, timeout=30):
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f'node did not exit within {timeout} s:\n{self.output()}')


@pytest.fixture(scope='session')
def installed_node():
    exe = INSTALL / 'lib' / 'perception' / 'perception_node'
    if not exe.exists():
        pytest.fail(f'{exe} missing: run scripts/setup.sh (colcon build) first')
    return exe


@pytest.fixture(scope='session')
def rclpy_context():
    import rclpy
    rclpy.init()
    yield rclpy
    rclpy.shutdown()


@pytest.fixture
def start_node(installed_node, tmp_path):
    started = []

    def start(extra_ros_args=(), **launch_args):
        launch_args.setdefault('params_file', str(TEST_PARAMS))
        launch_args.setdefault('device', 'cpu')
        node = NodeProcess(tmp_path / f'node{len(started)}.log', extra_ros_args, **launch_args)
        started.append(node)
        return node

    yield start
    for node in started:
        if node.process.poll() is None:
            node.stop()
