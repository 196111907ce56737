//! The ROS 2 node. Run it with `--ros-args --params-file config/perception.yaml`; see README.
//! (No `required-features`: cargo-ament-build, which colcon uses, then skips the binary.)
use std::process::ExitCode;

#[cfg(feature = "ros")]
fn main() -> ExitCode {
    match perception::ros::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perception_node: cannot run: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "ros"))]
fn main() -> ExitCode {
    eprintln!(
        "perception_node: this build has no ROS support; rebuild with the default `ros` feature"
    );
    ExitCode::FAILURE
}
