//! rosbag2 bags in the MCAP storage format, read and written without ROS: CDR payloads in, CDR
//! payloads out, with the `ros2msg` schemas and metadata.yaml that rosbag2 and rosbags need.
//! `scene::bag` writes generated camera frames through it; the node's offline mode reads its
//! input bag and writes its outputs through it.

mod metadata;
pub mod msg_defs;
mod reader;
mod writer;

pub use msg_defs::UnknownMessageType;
pub use reader::{BagMessage, BagReader, ReadError};
pub use writer::{McapBagWriter, TopicId, WriteError};
