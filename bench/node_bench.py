#!/usr/bin/env python3
"""The node's rows of the benchmark (run by bench/bench.py in the ROS 2 environment; needs the
release node, `make bench` builds it): perception_node with every head on (segmentation,
depth, pose, parallel-jaw and suction grasps, overlay subscribed) on VGA frames of a bag made
by `perception_train generate`, fed through rclpy with reliable QoS.

- end-to-end latency: one frame at a time (image, depth and camera_info published, then wait
  for every output topic with that stamp), publish of the image to the last output received;
  the node's own stage times from /diagnostics over the same frames; overhead = end-to-end
  minus the node's inference time (conversion, pairing, pre- and post-processing, grasp
  sampling, serialisation and DDS);
- throughput: every_frame mode with up to `--in-flight` frames outstanding, frames answered
  per second;
- the node's peak resident memory (VmHWM).

    . scripts/env.sh && python3 bench/node_bench.py [--frames N] [--threads T] [--json OUT]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray, PoseWithCovarianceStamped
from perception_msgs.msg import Detection2DArray, GraspArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from visualization_msgs.msg import MarkerArray

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'tests'))
from bag_player import INPUTS, TYPES, read_inputs  # noqa: E402

NODE = ROOT / 'target' / 'release' / 'perception_node'
TRAIN = ROOT / 'target' / 'release' / 'perception_train'
OUTPUTS = {'segmentation/mask': Image, 'segmentation/instances': Image, 'segmentation/overlay': Image,
           'detections': Detection2DArray, 'depth/estimated': Image,
           'camera_pose': PoseWithCovarianceStamped, 'grasps': GraspArray, 'grasps/poses': PoseArray}
# Subscribed too, so the node fills it, but a MarkerArray has no header of its own to match a
# frame by (its markers do, and there may be none).
UNSTAMPED = {'grasps/markers': MarkerArray}
# The node's diagnostics average its last 100 frames (src/runtime/node_stats.rs): its stage
# means cover the latency phase's frames, warm-up included.
STATS_WINDOW = 100


def vm_kb(pid, key):
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith(key + ':'):
            return int(line.split()[1])
    raise RuntimeError(f'no {key} for process {pid}')


class Bench:
    def __init__(self, frames):
        self.node = rclpy.create_node('perception_bench_client')
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.publishers = {topic: self.node.create_publisher(cls, topic, qos) for topic, cls in TYPES.items()}
        # (sec, nanosec) -> {topic: arrival time}
        self.arrivals = {}
        self.subscriptions = [
            self.node.create_subscription(cls, f'/{topic}', self._on_output(topic), 100)
            for topic, cls in OUTPUTS.items()]
        self.subscriptions += [self.node.create_subscription(cls, f'/{topic}', lambda _: None, 100)
                               for topic, cls in UNSTAMPED.items()]
        self.required = len(self.subscriptions)
        self.diagnostics = []
        self.subscriptions.append(self.node.create_subscription(
            DiagnosticArray, '/diagnostics', self.diagnostics.append, 100))
        # The bag's frames as (camera_info, depth, image) triples.
        by_stamp = {}
        for _, topic, msg in frames:
            by_stamp.setdefault((msg.header.stamp.sec, msg.header.stamp.nanosec), {})[topic] = msg
        self.frames = [(f[INPUTS['camera_info']], f[INPUTS['depth']], f[INPUTS['image']])
                       for _, f in sorted(by_stamp.items()) if len(f) == 3]
        if not self.frames:
            raise SystemExit('the generated bag has no complete image + depth + camera_info frame')
        self.sent = 0

    def _on_output(self, topic):
        def received(msg):
            stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
            self.arrivals.setdefault(stamp, {})[topic] = time.monotonic()
        return received

    def answered(self, stamp):
        return len(self.arrivals.get(stamp, {})) == len(OUTPUTS)

    def connected(self):
        return (all(p.get_subscription_count() > 0 for p in self.publishers.values())
                and all(self.node.count_publishers(s.topic_name) > 0
                        for s in self.subscriptions[:self.required]))

    def publish_next(self):
        """Publishes the next frame under a fresh stamp; returns (stamp, publish time)."""
        info, depth, image = self.frames[self.sent % len(self.frames)]
        stamp = (1000 + self.sent, 0)
        for msg in (info, depth, image):
            msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
        self.sent += 1
        self.publishers[INPUTS['camera_info']].publish(info)
        self.publishers[INPUTS['depth']].publish(depth)
        published = time.monotonic()
        self.publishers[INPUTS['image']].publish(image)
        return stamp, published

    def spin_until(self, predicate, what, node, timeout):
        deadline = time.monotonic() + timeout
        while not predicate():
            if node.poll() is not None:
                raise SystemExit(f'node exited ({node.returncode}) while waiting for {what}')
            if time.monotonic() > deadline:
                raise SystemExit(f'timed out after {timeout} s waiting for {what}')
            self.executor.spin_once(timeout_sec=0.002)

    def diagnostics_after(self, since):
        """The node's first /diagnostics key/values published after monotonic time `since`."""
        for array in self.diagnostics:
            stamp = array.header.stamp.sec + array.header.stamp.nanosec * 1e-9
            if stamp >= since:
                for status in array.status:
                    if 'perception_node' in status.name:
                        return {kv.key: kv.value for kv in status.values}
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=40, help='frames in each phase')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--in-flight', type=int, default=3)
    parser.add_argument('--threads', type=int, default=os.cpu_count())
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--json', type=Path, help='write the results here as JSON')
    args = parser.parse_args()
    if args.warmup + args.frames > STATS_WINDOW:
        raise SystemExit(f'--warmup + --frames above {STATS_WINDOW}: the node\'s stage means would '
                         f'not cover the whole latency phase')
    for exe in (NODE, TRAIN):
        if not exe.exists():
            raise SystemExit(f'{exe} missing: build it with `. scripts/env.sh && cargo build --release '
                             f'--bin {exe.name}` (make bench does)')
    with tempfile.TemporaryDirectory() as tmp:
        bag = Path(tmp) / 'bag'
        subprocess.run([str(TRAIN), 'generate', '--scenes', '8', '--width', str(args.width),
                        '--height', str(args.height), '--seed', '11', '--rate', '10',
                        '--out', str(Path(tmp) / 'dataset'), '--bag', str(bag)],
                       check=True, capture_output=True)
        frames = read_inputs(bag)
    command = [str(NODE), '--ros-args', '--params-file', str(ROOT / 'config' / 'perception.yaml'),
               '-p', f'models_dir:={ROOT / "models"}', '-p', 'device:=cpu', '-p', 'mode:=every_frame',
               '-p', 'reliable_qos:=true', '-p', 'pose_model:=posenet_cell', '-p', 'grasp_gripper:=both',
               '-p', 'diagnostics_period_s:=0.5']
    for name, topic in INPUTS.items():
        command += ['-r', f'{name}:={topic}']
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), RUST_LOG='warn')
    log = open(Path(tempfile.gettempdir()) / 'perception_node_bench.log', 'w')
    node = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    rclpy.init()
    bench = Bench(frames)
    try:
        bench.spin_until(bench.connected, 'discovery between the bench client and the node', node, 60)
        # Latency: one frame at a time.
        latencies, per_topic = [], {}
        for k in range(args.warmup + args.frames):
            stamp, published = bench.publish_next()
            bench.spin_until(lambda: bench.answered(stamp), f'every output of frame {stamp}', node, 60)
            if k >= args.warmup:
                latencies.append((max(bench.arrivals[stamp].values()) - published) * 1000)
                for topic, arrived in bench.arrivals[stamp].items():
                    per_topic.setdefault(topic, []).append((arrived - published) * 1000)
        # The node's stage means over the measured frames (its window holds the last 100).
        settled = time.time()
        bench.spin_until(lambda: bench.diagnostics_after(settled) is not None, '/diagnostics', node, 10)
        stages = bench.diagnostics_after(settled)
        # Throughput: several frames in flight.
        pending = []
        start = time.monotonic()
        for k in range(args.frames):
            pending.append(bench.publish_next()[0])
            bench.spin_until(lambda: sum(not bench.answered(s) for s in pending) < args.in_flight,
                             'the node to keep up', node, 60)
        bench.spin_until(lambda: all(bench.answered(s) for s in pending), 'the last frames', node, 60)
        elapsed = time.monotonic() - start
        fps = args.frames / elapsed
        peak_rss_mb = vm_kb(node.pid, 'VmHWM') / 1024
    finally:
        bench.node.destroy_node()
        rclpy.shutdown()
        node.terminate()
        node.wait(20)
        log.close()

    def stage(name):
        return float(stages[f'latency_{name}_mean_ms'])

    result = {
        'input': f'{args.width}x{args.height} rgb8 + 16UC1 depth + camera_info',
        'heads': 'segmentation (unet_bin_seg), depth (depth_bin), pose (posenet_cell), '
                 'grasps (gqcnn_parallel_jaw, parallel jaw + suction), overlay subscribed',
        'threads': args.threads, 'frames': args.frames,
        'end_to_end_ms_min': min(latencies), 'end_to_end_ms_median': statistics.median(latencies),
        'end_to_end_ms_mean': statistics.fmean(latencies), 'end_to_end_ms_max': max(latencies),
        'node_stages_mean_ms': {s: stage(s) for s in ('preprocess', 'inference', 'postprocess',
                                                       'publish', 'end_to_end')},
        'per_topic_ms_median': {t: statistics.median(v) for t, v in per_topic.items()},
        'overhead_beyond_inference_ms': statistics.fmean(latencies) - stage('inference'),
        'transport_ms': statistics.fmean(latencies) - stage('end_to_end'),
        'fps_every_frame': fps, 'in_flight': args.in_flight,
        'node_peak_rss_mb': peak_rss_mb,
    }
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text + '\n')
    print(text)


if __name__ == '__main__':
    main()
