"""Faults at scale: fuzzed image messages (fields and payloads) never crash the node and never
stop it answering good frames; a node killed mid-replay and restarted loses nothing it had
already published, and answers every frame sent after it is back."""
import random
import signal
import time

import numpy as np

from ros_client import Client, camera_info_msg, image_msg

INPUTS = {'image': '/fuzz_cam/image', 'depth': '/fuzz_cam/depth', 'camera_info': '/fuzz_cam/camera_info'}
ENCODINGS = ['rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', '16UC1', '32FC1', 'mono16', 'yuv422', '', 'rgb8\0',
             '8UC3', 'bayer_rggb8', 'RGB8', 'x' * 300]


def fuzzed(rng, sec, width=32, height=24):
    """An image message with one or more fields or its payload corrupted."""
    msg = image_msg(rng.choice(['rgb8', 'bgr8', 'mono8']), width, height, sec, seed=sec)
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(['encoding', 'width', 'height', 'step', 'truncate', 'extend', 'bytes', 'endian',
                           'huge'])
        if kind == 'encoding':
            msg.encoding = rng.choice(ENCODINGS)
        elif kind == 'width':
            msg.width = rng.choice([0, 1, width + 1, 2**31 - 1, 2**32 - 1])
        elif kind == 'height':
            msg.height = rng.choice([0, 1, height - 1, 2**32 - 1])
        elif kind == 'step':
            msg.step = rng.choice([0, 1, msg.step - 1, msg.step + 7, 2**32 - 1])
        elif kind == 'truncate':
            msg.data = bytes(msg.data)[:rng.randint(0, len(msg.data))]
        elif kind == 'extend':
            msg.data = bytes(msg.data) + bytes(rng.randint(1, 64))
        elif kind == 'bytes':
            data = bytearray(msg.data)
            for _ in range(16):
                if data:
                    data[rng.randrange(len(data))] = rng.randrange(256)
            msg.data = bytes(data)
        elif kind == 'endian':
            msg.is_bigendian = rng.choice([1, 255])
        elif kind == 'huge':
            msg.width, msg.height = 100000, 100000
    return msg


def test_fuzzed_images_and_depths_never_crash_the_node(start_node, rclpy_context):
    # Messages are checked by the worker, after the queue: room for the whole burst.
    node = start_node(extra_ros_args=['-p', 'queue_size:=1000'], **INPUTS)
    client = Client(rclpy_context, '', INPUTS)
    rng = random.Random(20261128)
    try:
        client.wait_connected(node)
        client.info_pub.publish(camera_info_msg(32, 24, 1))
        good_secs = []
        for k in range(300):
            sec = 1000 + k
            if k % 10 == 9:
                # A good frame every tenth: it must be answered whatever came before.
                client.image_pub.publish(image_msg('rgb8', 32, 24, sec, seed=sec))
                good_secs.append(sec)
            elif k % 3 == 0:
                # A good image with a fuzzed depth: answered or counted, never a crash.
                depth = fuzzed(rng, sec)
                depth.encoding = rng.choice(['16UC1', '32FC1', depth.encoding])
                client.depth_pub.publish(depth)
                client.image_pub.publish(image_msg('rgb8', 32, 24, sec, seed=sec))
            else:
                client.image_pub.publish(fuzzed(rng, sec))
            client.executor.spin_once(timeout_sec=0.005)
            assert node.process.poll() is None, f'node died at message {k}:\n{node.output()}'
        client.wait_for(lambda: all(client.masks_for(sec) for sec in good_secs), 'every good frame answered',
                        timeout=240, node_process=node)

        def accounted():
            d = client.latest_diagnostics()
            handled = int(d.get('frames_processed', 0)) + int(d.get('dropped_total', 0))
            return d.get('images_received') == '300' and handled == 300

        client.wait_for(accounted, 'every fuzzed frame answered or counted as dropped', timeout=120,
                        node_process=node)
        d = client.latest_diagnostics()
        assert int(d['dropped_malformed']) >= 150, d
        print(f"fuzz: 300 images ({len(good_secs)} good, 90 with fuzzed depth), {d['frames_processed']} "
              f"answered, {d['dropped_malformed']} dropped as malformed")
    finally:
        client.destroy()
        assert node.stop() == 0, node.output()


def test_a_killed_node_restarted_mid_stream_loses_nothing_it_published(start_node, rclpy_context):
    client = Client(rclpy_context, '', INPUTS)
    first = start_node(**INPUTS)
    try:
        client.wait_connected(first)
        sent_before = list(range(2000, 2015))
        for sec in sent_before:
            client.image_pub.publish(image_msg('rgb8', 64, 48, sec, seed=sec))
        # Kill it while frames are still queued, after it answered some.
        client.wait_for(lambda: len(client.masks) >= 3, 'the first answers', node_process=first)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
        answered_before = {m.header.stamp.sec: m for m in client.masks}
        # Every answer received is whole: full size, the header of a frame that was sent.
        for sec, mask in answered_before.items():
            assert sec in sent_before
            assert len(mask.data) == mask.width * mask.height == 64 * 48
            assert max(mask.data) < 4

        second = start_node(**INPUTS)
        # Discovery still lists the killed node's endpoints until their lease runs out: wait
        # for an answer from the new one, not for a matched subscription.
        probe = image_msg('rgb8', 64, 48, 2999, seed=2999)
        client.publish_until(client.image_pub, probe, lambda: client.masks_for(2999),
                             'an answer from the restarted node', timeout=120, node_process=second)
        # A burst of 40, four times what r2r's subscription channel holds.
        sent_after = list(range(3000, 3040))
        for sec in sent_after:
            client.image_pub.publish(image_msg('rgb8', 64, 48, sec, seed=sec))
        client.wait_for(lambda: all(client.masks_for(sec) for sec in sent_after),
                        'every frame sent to the restarted node answered', timeout=180, node_process=second)
        # The same input gives the same mask before and after the restart.
        again = sent_before[0]
        client.image_pub.publish(image_msg('rgb8', 64, 48, again, seed=again))
        client.wait_for(lambda: len(client.masks_for(again)) >= 2 or
                        (again not in answered_before and client.masks_for(again)),
                        'the repeated frame', node_process=second)
        if again in answered_before:
            masks = client.masks_for(again)
            assert np.array_equal(np.frombuffer(bytes(masks[0].data), np.uint8),
                                  np.frombuffer(bytes(masks[-1].data), np.uint8))
        print(f'kill/restart: {len(answered_before)} of {len(sent_before)} answered before SIGKILL, '
              f'{len(sent_after)} of {len(sent_after)} after the restart')
        assert second.stop() == 0, second.output()
    finally:
        client.destroy()
