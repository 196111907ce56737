//! The ROS 2 node. Run it with `--ros-args --params-file config/perception.yaml`; see README.
use std::process::ExitCode;

fn main() -> ExitCode {
    match perception::ros::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perception_node: cannot run: {e}");
            ExitCode::FAILURE
        }
    }
}
