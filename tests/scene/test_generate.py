"""perception_train generate end to end: the data set folder and the MCAP rosbag2 it writes
agree frame by frame, the bag reads back with rosbags and rclpy, and a seed gives the same
bytes twice."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bag_check  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / 'target' / 'debug' / 'perception_train'
SAMPLE_BAG = ROOT / 'data' / 'sample_bin_picking'


def generate(out, *extra):
    assert TRAIN.is_file(), f'{TRAIN} missing: build it with cargo build (make test does)'
    result = subprocess.run([str(TRAIN), 'generate', '--out', str(out), *map(str, extra)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_dataset_and_bag_agree(tmp_path):
    out, bag = tmp_path / 'ds', tmp_path / 'bag'
    stdout = generate(out, '--scenes', 5, '--seed', 4, '--width', 96, '--height', 72,
                      '--bag', bag, '--rate', 15)
    assert 'frames/s' in stdout
    info = yaml.safe_load((out / 'dataset.yaml').read_text())
    assert info['count'] == 5 and (info['width'], info['height']) == (96, 72)
    assert [c['name'] for c in info['classes']] == [
        'background', 'bin', 'box', 'cylinder', 'prism', 'boundary']

    checked = bag_check.check_bag(bag)
    assert checked['frame_count'] == 5
    first = checked['first_frame']
    rgb = np.array(Image.open(out / 'rgb' / '000000.png'))
    depth = np.array(Image.open(out / 'depth' / '000000.png'))
    mask = np.array(Image.open(out / 'mask' / '000000.png'))
    instances = np.array(Image.open(out / 'instances' / '000000.png'))
    assert np.array_equal(first['/camera/color/image_raw']['pixels'], rgb)
    assert np.array_equal(first['/camera/aligned_depth_to_color/image_raw']['pixels'], depth)
    assert np.array_equal(first['/ground_truth/segmentation']['pixels'], mask)
    assert np.array_equal(first['/ground_truth/instances']['pixels'], instances)
    labels = json.loads((out / 'labels' / '000000.json').read_text())
    grasps = first['/ground_truth/grasps']
    assert len(grasps) == len(labels['grasps']) > 0
    for ours, label in zip(grasps, labels['grasps']):
        assert abs(ours['quality'] - label['quality']) < 1e-6
        assert ours['instance_id'] == label['instance_id']
        assert np.allclose(ours['position_m'], label['position_camera_m'])
    k = first['/camera/color/camera_info']
    assert (k['fx'], k['cx']) == (labels['intrinsics']['fx'], labels['intrinsics']['cx'])
    # 15 Hz stamps.
    assert abs(checked['duration_ns'] - 4e9 / 15) < 2


def test_same_seed_same_bytes(tmp_path):
    for name in ('a', 'b'):
        generate(tmp_path / name, '--scenes', 2, '--seed', 9, '--width', 64, '--height', 48)
    for sub in ('rgb', 'depth', 'mask', 'instances', 'labels'):
        for a in sorted((tmp_path / 'a' / sub).iterdir()):
            assert a.read_bytes() == (tmp_path / 'b' / sub / a.name).read_bytes(), a


def test_bad_arguments_are_named(tmp_path):
    (tmp_path / 'busy').mkdir()
    (tmp_path / 'busy' / 'x').write_text('keep me')
    result = subprocess.run([str(TRAIN), 'generate', '--scenes', '1', '--out', str(tmp_path / 'busy')],
                            capture_output=True, text=True)
    assert result.returncode != 0 and 'not empty' in result.stderr, result.stderr
    assert (tmp_path / 'busy' / 'x').read_text() == 'keep me'
    config = tmp_path / 'scene.yaml'
    config.write_text('objects: {count: [3, 2]}\n')
    result = subprocess.run([str(TRAIN), 'generate', '--scenes', '1', '--out', str(tmp_path / 'o'),
                             '--config', str(config)], capture_output=True, text=True)
    assert result.returncode != 0 and 'objects.count' in result.stderr, result.stderr
    config.write_text('objects: {cuont: 3}\n')
    result = subprocess.run([str(TRAIN), 'generate', '--scenes', '1', '--out', str(tmp_path / 'o'),
                             '--config', str(config)], capture_output=True, text=True)
    assert result.returncode != 0 and 'cuont' in result.stderr, result.stderr


def test_committed_sample_bag_reads_back():
    checked = bag_check.check_bag(SAMPLE_BAG)
    assert checked['frame_count'] == 30
    size = sum(p.stat().st_size for p in SAMPLE_BAG.iterdir())
    assert size < 5 * 1024 * 1024, f'sample bag is {size} bytes'
