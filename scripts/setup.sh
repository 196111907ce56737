#!/usr/bin/env bash
# One idempotent setup for a fresh Debian bookworm machine (and every later run):
#   1. apt packages for the builds (cmake, libclang for bindgen, OpenCV),
#   2. a venv in .venv with the pinned ROS 2 Jazzy wheels and the test tools, and the
#      generator's photo textures in data/textures (from the scikit-image wheel),
#   3. the wheel quirks handled inside .venv (never in system paths),
#   4. colcon build of perception_msgs, then of the node (cargo, debug profile).
# A second run with nothing changed finishes in seconds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. apt packages ---------------------------------------------------------------------------
# dataset-fashion-mnist: real images for the classification training config (31 MB).
APT_PACKAGES=(cmake clang libclang-dev libopencv-dev pkg-config python3-venv dataset-fashion-mnist)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing apt packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 2. venv with pinned wheels --------------------------------------------------------------
VENV="$ROOT/.venv"
REQ="$ROOT/scripts/requirements.txt"
stamp="$VENV/.requirements.sha256"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python3" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "creating the Python venv in .venv (ROS 2 Jazzy wheels, colcon, rosbags, pytest)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
  echo "$want" > "$stamp"
fi

# 2b. photographs of real surfaces for the generator's `photo` texture (brick, grass, gravel:
# scikit-image ships them in its wheel): only the PNGs, taken out of the pinned wheel.
TEXTURES="$ROOT/data/textures"
if [ ! -f "$TEXTURES/brick.png" ]; then
  say "photo textures: brick, grass, gravel from the scikit-image 0.26.0 wheel into data/textures"
  wheel_dir="$(mktemp -d)"
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$wheel_dir" scikit-image==0.26.0
  mkdir -p "$TEXTURES"
  "$VENV/bin/python3" - "$wheel_dir" "$TEXTURES" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("scikit_image-*.whl"))
with zipfile.ZipFile(wheel) as z:
    for name in ("brick", "grass", "gravel"):
        pathlib.Path(sys.argv[2], name + ".png").write_bytes(z.read(f"skimage/data/{name}.png"))
PY
  rm -rf "$wheel_dir"
fi

# 3. quirk 1: r2r links -lrmw_implementation, the wheels only ship librmw_fastrtps_cpp.so --------
mkdir -p "$VENV/perception-link"
ln -sfn "$VENV/lib/librmw_fastrtps_cpp.so" "$VENV/perception-link/librmw_implementation.so"

# shellcheck source=scripts/env.sh
. "$ROOT/scripts/env.sh"

# r2r 0.9.7's build script prints its per-message cfgs only when it generates its bindings;
# when it reruns (an environment variable it watches changed) and reuses its cached ones, it
# prints none, and r2r builds without them: use_sim_time then silently never subscribes to
# /clock. A build whose script output lost the Clock cfg is cleaned so the next one
# regenerates.
for output in "$ROOT"/target/*/build/r2r-*/output; do
  if [ -f "$output" ] && grep -q 'rustc-check-cfg=cfg(r2r__rosgraph_msgs__msg__Clock)' "$output" \
     && ! grep -q 'rustc-cfg=r2r__rosgraph_msgs__msg__Clock' "$output"; then
    say "r2r was built from its cached bindings without their cfgs: rebuilding r2r"
    profile="$(basename "$(dirname "$(dirname "$(dirname "$output")")")")"
    [ "$profile" = debug ] && flag=() || flag=(--profile "$profile")
    (cd "$ROOT" && cargo clean -q -p r2r "${flag[@]}")
  fi
done

# 4. colcon build of both packages --------------------------------------------------------
# The node's cargo build directory is the repository's target/, so colcon, `cargo test` and the
# tests share one build of each profile.
mkdir -p "$PERCEPTION_WS/build"
if [ ! -L "$PERCEPTION_WS/build/perception" ]; then
  rm -rf "$PERCEPTION_WS/build/perception"
  mkdir -p "$ROOT/target"
  ln -s "$ROOT/target" "$PERCEPTION_WS/build/perception"
fi
say "colcon build: perception_msgs, then perception (first run: about 15 minutes)"
cd "$PERCEPTION_WS"
colcon --log-base "$PERCEPTION_WS/log" build \
  --base-paths "$ROOT" "$ROOT/perception_msgs" \
  --build-base "$PERCEPTION_WS/build" --install-base "$PERCEPTION_WS/install" \
  --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python3" -DBUILD_TESTING=OFF \
  --event-handlers console_cohesion- summary+ status-
say "ready: node at .ws/install/perception/lib/perception/perception_node"
