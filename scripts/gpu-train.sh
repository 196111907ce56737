#!/bin/bash
# One GPU session, prepared here and run on a lent GPU machine (see README "Building for
# CUDA"): the CUDA parity proof, then the four product networks trained side by side on
# generated data, each evaluated on its held-out set. Takes a bundle made on the build machine:
#   .gpu/bundle.tar.xz = bin/{golden_parity,perception_train} (built with --features cuda)
#                        + lib/ (the non-CUDA shared libraries they need, e.g. OpenCV's)
# Writes everything to $OUT (default ./gpu-out): logs, runs.tar.gz.part-* (the run folders).
# TRAIN_SECONDS bounds the training phase (default 380).
set -u
OUT=${OUT:-$PWD/gpu-out}
TRAIN_SECONDS=${TRAIN_SECONDS:-380}
mkdir -p "$OUT" /tmp/gpu && tar xJf .gpu/bundle.tar.xz -C /tmp/gpu || exit 1
cuda_lib=$(dirname "$(find /opt /usr/local /usr/lib -name 'libcublas.so.13' 2>/dev/null | head -1)")
export LD_LIBRARY_PATH=/tmp/gpu/lib:$cuda_lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
# The test binary finds its fixtures through the path it was built at.
mkdir -p /work && [ -e /work/main ] || ln -s "$PWD" /work/main
T=/tmp/gpu/bin/perception_train
ldd $T /tmp/gpu/bin/golden_parity | grep "not found" && echo "missing libraries above"

echo "== golden parity on CPU and CUDA"
timeout 150 /tmp/gpu/bin/golden_parity --nocapture --test-threads 4 >"$OUT/golden_parity_cuda.log" 2>&1
echo "golden_parity exit $?"; grep -E "^test |test result|cuda|CUDA" "$OUT/golden_parity_cuda.log" | tail -20

echo "== data"
S=config/scene/bin_picking_single_class.yaml
gen() { $T generate --scenes "$1" --out "$2" --seed "$3" --width "$4" --height "$5" --config "$6" 2>&1 | tail -1; }
gen 2000 data/seg320_train 1 320 240 $S & gen 300 data/seg320_test 2 320 240 $S &
gen 2000 data/seg_train 1 160 120 $S & gen 300 data/seg_test 2 160 120 $S &
gen 3000 data/pose_train 1 160 120 config/scene/pose_cell.yaml &
gen 300 data/pose_test 2 160 120 config/scene/pose_cell.yaml & wait

echo "== training for ${TRAIN_SECONDS}s"
runs="unet_bin_seg_320 depth_bin posenet_cell gqcnn_parallel_jaw"
for r in $runs; do
  (timeout "$TRAIN_SECONDS" $T fit --config config/train/$r.yaml --device cuda:0 \
     >"$OUT/$r.out" 2>"$OUT/$r.err"; echo "$r fit exit $?") &
done
wait
declare -A test_data=([unet_bin_seg_320]=data/seg320_test [depth_bin]=data/seg_test
  [posenet_cell]=data/pose_test [gqcnn_parallel_jaw]=data/seg320_test)
for r in $runs; do
  tr '\r' '\n' <"$OUT/$r.err" | grep -E "^epoch [0-9]+/[0-9]+:|error|warning" | tail -4
  echo "$r test: $($T eval --model runs/$r/model --data ${test_data[$r]} --device cuda:0 2>&1 | tail -1)" \
    | tee -a "$OUT/held_out.txt"
done
cp "$OUT"/*.err runs/ 2>/dev/null
tar czf /tmp/runs.tar.gz --dereference runs "$OUT/held_out.txt" "$OUT/golden_parity_cuda.log" 2>/dev/null
split -b 15M /tmp/runs.tar.gz "$OUT/runs.tar.gz.part-"
rm -f "$OUT"/*.err "$OUT"/*.out
ls -la "$OUT"
