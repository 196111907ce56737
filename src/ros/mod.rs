//! The ROS 2 shell (r2r): converts messages, wires topics and parameters to the pipeline.
//! The only module that names r2r types.

mod convert;
mod diagnostics;
mod node;
mod node_error;
mod offline;
mod outputs;
mod params;

pub use node::run;
pub use node_error::NodeError;
pub use offline::{run_offline, OfflineArgs, OfflineSummary};
pub use params::{NodeConfig, NodeParams, ParamError, RUNTIME_PARAMETERS};
