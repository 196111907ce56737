# shellcheck shell=bash
# Environment for building and running against the ROS 2 Jazzy wheels in .venv, which ship no
# setup.bash (see README, "Development install"). Source it: `. scripts/env.sh`.
# On a real ROS 2 install, source /opt/ros/jazzy/setup.bash and install/setup.bash instead.

PERCEPTION_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PERCEPTION_VENV="$PERCEPTION_ROOT/.venv"
PERCEPTION_WS="$PERCEPTION_ROOT/.ws"
export PERCEPTION_ROOT PERCEPTION_VENV PERCEPTION_WS

_site="$PERCEPTION_VENV/lib/python3.11/site-packages"
_libs="$PERCEPTION_VENV/lib"
for _d in "$_site"/*.libs; do
  [ -d "$_d" ] && _libs="$_libs:$_d"
done

export ROS_DISTRO=jazzy
export ROS_VERSION=2
export ROS_PYTHON_VERSION=3
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
export AMENT_PREFIX_PATH="$PERCEPTION_WS/install/perception_msgs:$PERCEPTION_VENV"
export CMAKE_PREFIX_PATH="$PERCEPTION_WS/install/perception_msgs:$PERCEPTION_VENV"
export LD_LIBRARY_PATH="$PERCEPTION_WS/install/perception_msgs/lib:$_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="$PERCEPTION_WS/install/perception_msgs/lib/python3.11/site-packages"
export PATH="$PERCEPTION_VENV/bin:$HOME/.cargo/bin:$PATH"
# Bindings only for the message packages the node uses (r2r adds its own needs).
export IDL_PACKAGE_FILTER="std_msgs;sensor_msgs;geometry_msgs;visualization_msgs;diagnostic_msgs;rosgraph_msgs;perception_msgs"
# Quirk 1: r2r (its build script too) links -lrmw_implementation, which the wheels do not ship;
# setup.sh puts a symlink to librmw_fastrtps_cpp.so in this folder, and the C linker searches it.
export LIBRARY_PATH="$PERCEPTION_VENV/perception-link"
# Quirk 2: the wheels' librcl needs CPython symbols; build.rs links libpython into the binaries.
PERCEPTION_LINK_LIBPYTHON="$(python3 -c 'import sysconfig as s; print(s.get_config_var("LIBDIR"))')"
export PERCEPTION_LINK_LIBPYTHON
# Keep test and demo traffic on this machine.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
unset _site _libs _d
