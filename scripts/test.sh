#!/usr/bin/env bash
# The test suite: Rust unit tests with and without ROS, then the node, launch and install
# tests with a real rclpy client (pytest). Run after scripts/setup.sh (`make test` does both).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. scripts/env.sh
# One build configuration for both packages: `cargo test -p perception_kernels` on its own
# resolves the kernels' dependencies with fewer features (rand, ...) than the node does, and
# so compiled candle-core, gemm, safetensors, tokenizers, ... all again (10 min here, 6.5 CPU
# min); --workspace runs the kernels' tests against the build colcon already made.
echo "== cargo test --workspace (default features: ros; the CPU kernels against Candle's ops)"
cargo test --workspace
echo "== cargo test --no-default-features (library and perception_train without ROS)"
cargo test --no-default-features --lib --bin perception_train
echo "== perception_train summary (no ROS)"
target/debug/perception_train summary --model models/unet_seg_untrained | tail -1
vgg16="$(target/debug/perception_train summary vgg16 | tail -1)"
echo "vgg16: $vgg16"
test "$vgg16" = "total params: 138357544"
echo "== pytest: node with a real rclpy client, launch file, colcon install"
python3 -m pytest tests -v -p no:cacheprovider
