"""The shipped models on freshly generated scenes (seeds they were not trained or tested on),
through `perception_train eval`: the JSON keys of the training issue and each task's quality,
with some slack over the held-out figures in their model.yaml (these samples are small)."""
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / 'target' / 'debug' / 'perception_train'


def generate(out, scenes, seed, width, height, scene='bin_picking_single_class.yaml'):
    subprocess.run([str(TRAIN), 'generate', '--scenes', str(scenes), '--out', str(out), '--seed', str(seed),
                    '--width', str(width), '--height', str(height),
                    '--config', str(ROOT / 'config' / 'scene' / scene)],
                   check=True, capture_output=True, timeout=300)


def evaluate(model, data):
    result = subprocess.run([str(TRAIN), 'eval', '--model', str(ROOT / 'models' / model),
                             '--data', str(data), '--device', 'cpu'],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_shipped_depth_pose_grasp_and_320_segmentation_models(tmp_path):
    bins = tmp_path / 'bins320'
    generate(bins, 10, 91, 320, 240)
    seg = evaluate('unet_bin_seg_320', bins)
    assert seg['per_class_iou'][2] > 0.9, seg
    grasp = evaluate('gqcnn_parallel_jaw', bins)
    assert {'accuracy', 'precision', 'recall', 'average_precision'} <= grasp.keys()
    assert grasp['candidates'] > 300 and grasp['average_precision'] > 0.8, grasp

    small = tmp_path / 'bins160'
    generate(small, 10, 92, 160, 120)
    depth = evaluate('depth_bin', small)
    assert {'abs_rel', 'rmse', 'delta1'} <= depth.keys()
    assert depth['abs_rel'] < 0.05 and depth['delta1'] > 0.95, depth

    views = tmp_path / 'views'
    generate(views, 30, 93, 160, 120, scene='pose_cell.yaml')
    pose = evaluate('posenet_cell', views)
    assert pose['median_translation_m'] < 0.08 and pose['median_rotation_deg'] < 6.0, pose


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
