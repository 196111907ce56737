//! The ROS 2 node. Run it with `--ros-args --params-file config/perception.yaml`; see README.
//! With `--input-bag IN --output-bag OUT [--params-file F]` it runs offline instead: every frame
//! of a rosbag2 (MCAP) bag through the same pipeline, outputs to a new bag, no DDS.
//! (No `required-features`: cargo-ament-build, which colcon uses, then skips the binary.)
use std::process::ExitCode;

#[cfg(feature = "ros")]
fn main() -> ExitCode {
    use clap::Parser;

    if std::env::args().any(|arg| arg == "--input-bag" || arg.starts_with("--input-bag=")) {
        let args = perception::ros::OfflineArgs::parse();
        return match perception::ros::run_offline(&args) {
            Ok(summary) => {
                println!(
                    "perception_node offline: {} images, {} frames written ({} with depth), {} skipped, {} messages in {}; inference {:.1} s, wall {:.1} s",
                    summary.images,
                    summary.frames_written,
                    summary.frames_with_depth,
                    summary.skipped.len(),
                    summary.messages_written,
                    args.output_bag.display(),
                    summary.inference.as_secs_f64(),
                    summary.wall.as_secs_f64(),
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("perception_node: offline run failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
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
