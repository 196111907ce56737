#!/usr/bin/env python3
"""Soak: 10 000 frames (64x48 rgb8 + 16UC1 depth + camera_info) into the installed node in
every_frame mode through rclpy, at most 8 in flight, with the node's resident memory sampled
every 500 frames. Passes when every frame is answered and memory after warm-up (the first
1000 frames) grows by less than 8 MB. Prints the figures.

    make soak        (or: . scripts/env.sh && python3 scripts/soak.py [--frames N])
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import rclpy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'tests'))
from conftest import TEST_PARAMS, NodeProcess  # noqa: E402
from ros_client import Client, camera_info_msg, image_msg  # noqa: E402

INPUTS = {'image': '/soak/image', 'depth': '/soak/depth', 'camera_info': '/soak/camera_info'}
WARM_UP = 1000
MAX_GROWTH_MB = 8.0


def rss_mb(pid):
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f'no VmRSS for process {pid}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=10_000)
    args = parser.parse_args()
    out = ROOT / 'demo_out'
    out.mkdir(exist_ok=True)
    node = NodeProcess(out / 'soak_node.log', params_file=str(TEST_PARAMS), device='cpu', **INPUTS)
    rclpy.init()
    client = Client(rclpy, '', INPUTS)
    samples = []
    answered = set()
    client.mask_sub = client.node.create_subscription(
        type(image_msg('mono8', 1, 1, 0)), '/segmentation/mask',
        lambda m: answered.add(m.header.stamp.sec), 1000)
    try:
        client.wait_connected(node, timeout=60)
        info = camera_info_msg(64, 48, 0)
        frames = [(image_msg('rgb8', 64, 48, 0, seed=k), image_msg('16UC1', 64, 48, 0, seed=100 + k))
                  for k in range(16)]
        started = time.monotonic()
        for k in range(args.frames):
            sec = 10_000 + k
            image, depth = frames[k % len(frames)]
            for msg in (info, depth, image):
                msg.header.stamp.sec = sec
            client.info_pub.publish(info)
            client.depth_pub.publish(depth)
            client.image_pub.publish(image)
            while k + 1 - len(answered) > 8:
                client.executor.spin_once(timeout_sec=0.01)
                if node.process.poll() is not None:
                    raise SystemExit(f'node exited at frame {k}:\n{node.output()}')
            client.executor.spin_once(timeout_sec=0)
            if k % min(500, max(args.frames // 10, 1)) == 0:
                samples.append((k, rss_mb(node.process.pid)))
        client.wait_for(lambda: len(answered) >= args.frames, f'{args.frames} masks', timeout=300,
                        node_process=node)
        elapsed = time.monotonic() - started
        samples.append((args.frames, rss_mb(node.process.pid)))
        diagnostics = client.latest_diagnostics()
    finally:
        client.destroy()
        rclpy.shutdown()
        code = node.stop()
    warm_up = min(WARM_UP, args.frames // 3)
    after = [mb for k, mb in samples if k >= warm_up]
    growth = max(after) - after[0]
    print(f'soak: {args.frames} frames in {elapsed:.0f} s ({args.frames / elapsed:.1f} frames/s), '
          f'{len(answered)} answered, node exit {code}')
    print('  resident memory (MB) by frame: ' + ', '.join(f'{k}: {mb:.1f}' for k, mb in samples))
    print(f'  growth after frame {warm_up}: {growth:.2f} MB (limit {MAX_GROWTH_MB})')
    print(f"  node: frames_processed {diagnostics.get('frames_processed')}, "
          f"dropped_total {diagnostics.get('dropped_total')}, "
          f"inference mean {diagnostics.get('latency_inference_mean_ms')} ms")
    ok = len(answered) >= args.frames and growth < MAX_GROWTH_MB and code == 0
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
