#!/usr/bin/env bash
# Regenerates data/sample_bin_picking, the 30-frame bag the demo and the replay tests use.
# Deterministic: the same seed and sizes give the same frames.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
cargo build --release --no-default-features --bin perception_train
rm -rf data/sample_bin_picking
tmp="$(mktemp -d)"
target/release/perception_train generate --scenes 30 --width 320 --height 240 --seed 1 --rate 10 \
    --out "$tmp/dataset" --bag data/sample_bin_picking
rm -rf "$tmp"
du -sh data/sample_bin_picking
