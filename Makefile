# The two commands of the README. Both set up a fresh machine first (idempotent, seconds
# when nothing changed): apt packages, the ROS 2 venv, colcon build of both packages.
.PHONY: setup demo test soak

setup:
	scripts/setup.sh

demo: setup
	bash -c '. scripts/env.sh && python3 scripts/demo.py'

test: setup
	scripts/test.sh

# Not in CI: 10 000 frames into the node with its memory sampled (scripts/soak.py).
soak: setup
	bash -c '. scripts/env.sh && python3 scripts/soak.py'
