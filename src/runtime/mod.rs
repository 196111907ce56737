//! The ROS-free parts of the node's runtime: pairing colour and depth by stamp, handing
//! frames to the inference worker, and the statistics `/diagnostics` reports.

mod frame_queue;
mod log_throttle;
mod node_stats;
mod stamp_pairing;

pub use frame_queue::{FrameQueue, Push, QueueMode};
pub use log_throttle::LogThrottle;
pub use node_stats::{DropReason, NodeStats, StatsSnapshot};
pub use stamp_pairing::{Paired, StampPairer};
