#!/usr/bin/env python3
"""The benchmark harness (`make bench`; not in CI): each shipped network at its deployment
resolution, batch 1, the same weights (our safetensors loaded into the equivalent PyTorch
module of tests/fixtures/make_golden.py) and the same thread count, measured in one run:

- Candle CPU latency (`perception_train bench`, release build) against PyTorch CPU eager, min
  and median of repeated runs and their ratio (< 1: Candle is faster);
- achieved GFLOP/s (multiply-adds counted as two FLOPs, from the PyTorch module's
  convolution and linear layers) against the machine's f32 peak, computed from core count,
  SIMD width, FMA units and clock, printed with how it was computed;
- a U-Net training step (forward, loss, backward) against PyTorch's;
- peak resident memory of each side's process;
- parity: the largest difference between the two outputs on the same input;
- the node (bench/node_bench.py, in the ROS 2 environment of scripts/env.sh): end-to-end
  latency publish to receive with every head on VGA frames, its overhead beyond inference,
  frames per second, peak resident memory.

Results go to bench/results/<date>.json and .md; the README shows the latest table.
Run in the PyTorch venv (.venv-bench, made by `make bench`):
    .venv-bench/bin/python bench/bench.py [--repeats N] [--rounds R] [--threads T]
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'tests' / 'fixtures'))
import make_golden  # noqa: E402  (the PyTorch twins of our networks)

TRAIN = ROOT / 'target' / 'release' / 'perception_train'
MODELS = ['unet_bin_seg', 'unet_bin_seg_320', 'depth_bin', 'posenet_cell', 'gqcnn_parallel_jaw']
TRAIN_STEP_MODELS = ['unet_bin_seg']


def torch_module(folder):
    config = yaml.safe_load((folder / 'model.yaml').read_text())
    (kind, arch), = config['architecture'].items()
    module = make_golden.NETWORKS[kind](arch)
    state = load_file(str(folder / 'model.safetensors'))
    missing, unexpected = module.load_state_dict(state, strict=False)
    # BatchNorm's num_batches_tracked is PyTorch bookkeeping our files do not carry.
    missing = [m for m in missing if not m.endswith('num_batches_tracked')]
    if missing or unexpected:
        raise SystemExit(f'{folder}: PyTorch twin does not match the weights: missing {missing}, '
                         f'unexpected {unexpected}')
    # Eval mode from the start: a forward pass in train mode would update BatchNorm's running
    # statistics, even under no_grad.
    return config, kind, module.eval()


def bench_inputs(config, kind, batch=1):
    """The inputs of src/train/bench.rs: x[i] = 0.5 sin(0.37 i), a GQ-CNN's depth 0.6 m."""
    arch = next(iter(config['architecture'].values()))
    channels = {'grasp_quality': 1, 'mlp': 1, 'posenet': arch.get('backbone', {}).get('in_channels')}.get(
        kind, arch.get('in_channels'))
    shape = (batch, channels, config['input']['height'], config['input']['width'])
    i = np.arange(int(np.prod(shape)), dtype=np.float64)
    inputs = [torch.from_numpy((0.5 * np.sin(0.37 * i)).astype(np.float32).reshape(shape))]
    if kind == 'grasp_quality':
        inputs.append(torch.full((batch, 1), 0.6))
    return inputs


def count_flops(module, inputs):
    """Multiply-adds x 2 of every convolution, transposed convolution and linear layer."""
    total = [0]

    def hook(layer, args, out):
        if isinstance(layer, torch.nn.Conv2d):
            k = layer.kernel_size[0] * layer.kernel_size[1] * layer.in_channels // layer.groups
            total[0] += 2 * k * out.numel()
        elif isinstance(layer, torch.nn.ConvTranspose2d):
            k = layer.kernel_size[0] * layer.kernel_size[1] * layer.out_channels // layer.groups
            total[0] += 2 * k * args[0].numel()
        elif isinstance(layer, torch.nn.Linear):
            total[0] += 2 * layer.in_features * out.numel()

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))]
    with torch.no_grad():
        module(*inputs)
    for h in handles:
        h.remove()
    return total[0]


def time_torch(module, inputs, warmup, repeats, train_step):
    def run():
        if train_step:
            # Train mode for the step (BatchNorm's running statistics move: the parity reference
            # was taken before).
            module.train()
            module.zero_grad(set_to_none=True)
            out = module(*inputs)
            targets = torch.ones((out.shape[0],) + tuple(out.shape[2:]), dtype=torch.long)
            torch.nn.functional.cross_entropy(out, targets).backward()
        else:
            module.eval()
            with torch.no_grad():
                module(*inputs).sum().item()

    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return times


def time_candle(folder, warmup, repeats, train_step, threads, candle_ops=False):
    """`candle_ops`: Candle's own convolutions (PERCEPTION_KERNELS=candle), the 'before' of
    the CPU kernels of perception_kernels."""
    args = [str(TRAIN), 'bench', '--model', str(folder), '--warmup', str(warmup), '--repeats', str(repeats)]
    if train_step:
        args.append('--train-step')
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    env.pop('PERCEPTION_KERNELS', None)
    if candle_ops:
        env['PERCEPTION_KERNELS'] = 'candle'
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=1800)
    if result.returncode != 0:
        raise SystemExit(f'{" ".join(args)} failed:\n{result.stderr}')
    return json.loads(result.stdout)


def node_bench(threads):
    """bench/node_bench.py in the ROS 2 environment (its own Python venv, .venv)."""
    with tempfile.NamedTemporaryFile(suffix='.json') as out:
        command = f'. scripts/env.sh && python3 bench/node_bench.py --threads {threads} --json {out.name}'
        result = subprocess.run(['bash', '-c', command], cwd=ROOT, capture_output=True, text=True,
                                timeout=1800)
        if result.returncode != 0:
            raise SystemExit(f'bench/node_bench.py failed:\n{result.stdout}\n{result.stderr}')
        return json.loads(Path(out.name).read_text())


def machine_peak(threads):
    """f32 peak GFLOP/s = cores x FMA units x SIMD lanes x 2 FLOPs x clock, and how."""
    info = Path('/proc/cpuinfo').read_text()
    flags = set(re.search(r'^flags\s*:\s*(.*)$', info, re.M).group(1).split())
    model = re.search(r'^model name\s*:\s*(.*)$', info, re.M).group(1)
    lanes = 16 if 'avx512f' in flags else 8 if 'avx2' in flags else 4
    fma_units = 2 if 'fma' in flags else 1
    max_freq = Path('/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq')
    if max_freq.exists():
        ghz, clock_from = int(max_freq.read_text()) / 1e6, 'cpufreq max'
    else:
        mhz = [float(m) for m in re.findall(r'^cpu MHz\s*:\s*([\d.]+)$', info, re.M)]
        ghz, clock_from = max(mhz) / 1000, '/proc/cpuinfo cpu MHz'
    peak = threads * fma_units * lanes * 2 * ghz
    how = (f'{threads} cores x {fma_units} FMA units x {lanes} f32 lanes '
           f'({"AVX-512" if lanes == 16 else "AVX2" if lanes == 8 else "SSE"}) x 2 FLOPs x {ghz:.2f} GHz '
           f'({clock_from}) = {peak:.0f} GFLOP/s; {model}')
    return peak, how


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=10, help='timed runs per side and round')
    parser.add_argument('--rounds', type=int, default=3, help='turns each side takes')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--threads', type=int, default=os.cpu_count())
    parser.add_argument('--no-node', action='store_true',
                        help='the networks only, without the ROS 2 node rows (no release node build needed)')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peak, how = machine_peak(args.threads)
    rows = []
    for name in MODELS + [f'{m}:train' for m in TRAIN_STEP_MODELS]:
        model, _, step = name.partition(':')
        train_step = step == 'train'
        folder = ROOT / 'models' / model
        config, kind, module = torch_module(folder)
        inputs = bench_inputs(config, kind)
        flops = count_flops(module, inputs) * (3 if train_step else 1)
        with torch.no_grad():
            module.eval()
            reference = module(*inputs).flatten().numpy()
        # The three sides take turns, `rounds` times, so a slow spell of the machine (other
        # load, clock changes) falls on all of them rather than on one.
        ours, before_ms, theirs = [], [], []
        for _ in range(args.rounds):
            candle = time_candle(folder, args.warmup, args.repeats, train_step, args.threads)
            ours += candle['latencies_ms']
            before = time_candle(folder, args.warmup, args.repeats, train_step, args.threads,
                                 candle_ops=True)
            before_ms += before['latencies_ms']
            theirs += time_torch(module, inputs, args.warmup, args.repeats, train_step)
        diff = float(np.max(np.abs(np.array(candle['output']) - reference)) / max(np.max(np.abs(reference)), 1e-12))
        row = {
            'network': model, 'what': 'training step' if train_step else 'inference',
            'input': 'x'.join(map(str, candle['input_shapes'][0])),
            'gflop': flops / 1e9,
            'candle_ms_min': min(ours), 'candle_ms_median': statistics.median(ours),
            'candle_ops_ms_median': statistics.median(before_ms),
            'torch_ms_min': min(theirs), 'torch_ms_median': statistics.median(theirs),
            'ratio_median': statistics.median(ours) / statistics.median(theirs),
            'candle_gflops': flops / 1e9 / (min(ours) / 1000),
            'torch_gflops': flops / 1e9 / (min(theirs) / 1000),
            'candle_peak_rss_mb': candle['peak_rss_mb'],
            'max_relative_output_difference': diff,
            # Medians over the last round's runs, per traced layer: (name, kernels ms, Candle's ops ms).
            'layers_ms': [(name, ms, dict(before['layers_ms']).get(name))
                          for name, ms in candle['layers_ms']],
            'backward_ms': candle.get('backward_ms'), 'candle_ops_backward_ms': before.get('backward_ms'),
        }
        rows.append(row)
        print(f"{model:20} {row['what']:13} candle {row['candle_ms_median']:8.2f} ms "
              f"(Candle's ops {row['candle_ops_ms_median']:8.2f} ms)  torch "
              f"{row['torch_ms_median']:8.2f} ms  ratio {row['ratio_median']:.2f}  "
              f"{row['candle_gflops']:.1f} vs {row['torch_gflops']:.1f} GFLOP/s", flush=True)
    torch_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    node = None if args.no_node else node_bench(args.threads)
    date = datetime.date.today().isoformat()
    result = {'date': date, 'threads': args.threads, 'repeats': args.repeats, 'rounds': args.rounds,
              'peak_gflops': peak,
              'peak_how': how, 'torch': torch.__version__, 'python': platform.python_version(),
              'torch_process_peak_rss_mb': torch_rss, 'rows': rows, 'node': node}
    out = ROOT / 'bench' / 'results'
    out.mkdir(parents=True, exist_ok=True)
    (out / f'{date}.json').write_text(json.dumps(result, indent=1) + '\n')
    table = [f'Benchmark of {date}: batch 1, {args.threads} threads, median of {args.rounds} rounds x {args.repeats} runs '
             f'(the sides taking turns), each after '
             f'{args.warmup} warm-up; PyTorch {torch.__version__} eager; ratio = Candle / PyTorch '
             f'(below 1: Candle faster). f32 peak: {how}.', '',
             '| network | run | input | GFLOP | Candle ms | PyTorch ms | ratio | Candle GFLOP/s (% peak) '
             '| PyTorch GFLOP/s | Candle peak RSS MB | max rel. diff | before: Candle\'s ops ms (ratio) |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        table.append(f"| {r['network']} | {r['what']} | {r['input']} | {r['gflop']:.3f} | "
                     f"{r['candle_ms_median']:.2f} | {r['torch_ms_median']:.2f} | {r['ratio_median']:.2f} | "
                     f"{r['candle_gflops']:.1f} ({100 * r['candle_gflops'] / peak:.0f} %) | "
                     f"{r['torch_gflops']:.1f} | {r['candle_peak_rss_mb']:.0f} | "
                     f"{r['max_relative_output_difference']:.1e} | {r['candle_ops_ms_median']:.2f} "
                     f"({r['candle_ops_ms_median'] / r['torch_ms_median']:.2f}) |")
    table.append('')
    table.append(f'PyTorch process peak RSS (all networks): {torch_rss:.0f} MB. Training-step GFLOP counts '
                 f'the forward pass three times (forward + backward). "Candle ms" uses perception_kernels\' '
                 f'CPU convolutions; the last column is the same binary with PERCEPTION_KERNELS=candle '
                 f'(Candle 0.11\'s own conv2d and conv_transpose2d), measured in the same run.')
    for r in rows:
        table += ['', f"Per layer, {r['network']} {r['what']} (median ms of the last round; Candle's ops "
                      f"in brackets):", '',
                  ' '.join(f"{name} {ms:.2f} ({'-' if old is None else f'{old:.2f}'})"
                           for name, ms, old in r['layers_ms'])
                  + (f"; loss + backward {r['backward_ms']:.2f} ({r['candle_ops_backward_ms']:.2f})"
                     if r['backward_ms'] is not None else '')]
    if node is None:
        table += ['', 'Node rows not measured in this run (--no-node).']
    else:
        table += ['', f"Node (release build, {node['threads']} threads, {node['frames']} frames each): "
                  f"{node['input']}; {node['heads']}.", '',
                  '| end-to-end ms (min / median / max) | node inference ms | overhead beyond inference ms '
                  '| of which outside the node ms | frames/s (every_frame, '
                  f"{node['in_flight']} in flight) | node peak RSS MB |",
                  '|---|---|---|---|---|---|',
                  f"| {node['end_to_end_ms_min']:.1f} / {node['end_to_end_ms_median']:.1f} / "
                  f"{node['end_to_end_ms_max']:.1f} | {node['node_stages_mean_ms']['inference']:.1f} | "
                  f"{node['overhead_beyond_inference_ms']:.1f} | {node['transport_ms']:.1f} | "
                  f"{node['fps_every_frame']:.2f} | {node['node_peak_rss_mb']:.0f} |", '',
                  'Node stage means (ms, from its /diagnostics over the latency frames): ' +
                  ', '.join(f'{k} {v:.1f}' for k, v in node['node_stages_mean_ms'].items()) +
                  '. Overhead = end-to-end (client publish of the image to the last output received, '
                  'mean) minus inference; outside the node = end-to-end minus the node\'s own '
                  'end-to-end (DDS transport both ways and the rclpy client). Median arrival per output '
                  '(ms after the image was published): ' +
                  ', '.join(f'{t} {v:.0f}' for t, v in node['per_topic_ms_median'].items()) + '.']
    (out / f'{date}.md').write_text('\n'.join(table) + '\n')
    print('\n'.join(table))
    print(f'written: {out / date}.json, .md')


if __name__ == '__main__':
    main()
