# The two commands of the README. Both set up a fresh machine first (idempotent, seconds
# when nothing changed): apt packages, the ROS 2 venv, colcon build of both packages.
.PHONY: setup demo test soak bench

setup:
	scripts/setup.sh

demo: setup
	bash -c '. scripts/env.sh && python3 scripts/demo.py'

test: setup
	scripts/test.sh

# Not in CI: 10 000 frames into the node with its memory sampled (scripts/soak.py).
soak: setup
	bash -c '. scripts/env.sh && python3 scripts/soak.py'

# Not in CI: Candle against PyTorch on every shipped network, then the release node with every
# head on VGA frames (bench/bench.py, bench/node_bench.py). PyTorch goes into its own venv,
# .venv-bench (about 3 GB with its CUDA libraries, which the CPU runs do not use).
bench: setup
	test -x .venv-bench/bin/python || (python3 -m venv .venv-bench && .venv-bench/bin/pip install -q torch safetensors numpy pyyaml)
	bash -c '. scripts/env.sh && cargo build --release --bins'
	.venv-bench/bin/python bench/bench.py
