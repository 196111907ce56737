"""The shipped segmentation model on freshly generated scenes (a seed it was not trained on),
through `perception_train eval`: the JSON keys of the training issue and the object IoU."""
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / 'target' / 'debug' / 'perception_train'


def generate(out, scenes, seed, width, height):
    subprocess.run([str(TRAIN), 'generate', '--scenes', str(scenes), '--out', str(out), '--seed', str(seed),
                    '--width', str(width), '--height', str(height),
                    '--config', str(ROOT / 'config' / 'scene' / 'bin_picking_single_class.yaml')],
                   check=True, capture_output=True, timeout=300)


def test_shipped_unet_segments_new_scenes(tmp_path):
    data = tmp_path / 'scenes'
    generate(data, 12, 77, 160, 120)
    result = subprocess.run([str(TRAIN), 'eval', '--model', str(ROOT / 'models' / 'unet_bin_seg'),
                             '--data', str(data), '--device', 'cpu'],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert {'miou', 'per_class_iou', 'miou_objects'} <= metrics.keys()
    background, bin_, objects = metrics['per_class_iou'][:3]
    assert background > 0.98 and bin_ > 0.95, metrics
    assert objects > 0.8, metrics


def test_eval_names_a_size_mismatch(tmp_path):
    data = tmp_path / 'big'
    generate(data, 1, 1, 64, 48)
    result = subprocess.run([str(TRAIN), 'eval', '--model', str(ROOT / 'models' / 'unet_bin_seg'),
                             '--data', str(data)], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and '160x120' in result.stderr, result.stderr
