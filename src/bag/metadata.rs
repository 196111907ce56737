//! metadata.yaml: rosbag2_storage's BagMetadata, written with the fields in the order rosbag2
//! writes them, and read back leniently (only what a reader needs; other fields and older
//! versions' shapes are ignored).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// rosbag2 metadata version of ROS 2 Jazzy, the newest rosbags reads.
pub const METADATA_VERSION: u32 = 9;

#[derive(Serialize)]
pub struct MetadataFile {
    pub rosbag2_bagfile_information: BagfileInformation,
}

#[derive(Serialize)]
pub struct BagfileInformation {
    pub version: u32,
    pub storage_identifier: String,
    pub duration: DurationNs,
    pub starting_time: TimeSinceEpoch,
    pub message_count: u64,
    pub topics_with_message_count: Vec<TopicWithMessageCount>,
    pub compression_format: String,
    pub compression_mode: String,
    pub relative_file_paths: Vec<String>,
    pub files: Vec<FileInformation>,
    pub custom_data: BTreeMap<String, String>,
    pub ros_distro: String,
}

#[derive(Clone, Copy, Serialize)]
pub struct DurationNs {
    pub nanoseconds: u64,
}

#[derive(Clone, Copy, Serialize)]
pub struct TimeSinceEpoch {
    pub nanoseconds_since_epoch: u64,
}

#[derive(Serialize)]
pub struct TopicWithMessageCount {
    pub topic_metadata: TopicMetadata,
    pub message_count: u64,
}

#[derive(Serialize)]
pub struct TopicMetadata {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub serialization_format: String,
    /// Version 9 stores the offered QoS as a YAML list (rosbag2 fails to read a string there,
    /// as versions 4 to 8 had it); always empty here, see `McapBagWriter::add_topic`.
    pub offered_qos_profiles: Vec<BTreeMap<String, String>>,
    /// RIHS01 type hash in a recorded bag; readers accept it empty (no check).
    pub type_description_hash: String,
}

#[derive(Serialize)]
pub struct FileInformation {
    pub path: String,
    pub starting_time: TimeSinceEpoch,
    pub duration: DurationNs,
    pub message_count: u64,
}

/// What a reader takes from metadata.yaml.
#[derive(Deserialize)]
pub struct MetadataRead {
    pub rosbag2_bagfile_information: BagfileRead,
}

#[derive(Deserialize)]
pub struct BagfileRead {
    pub storage_identifier: String,
    #[serde(default)]
    pub compression_format: String,
    #[serde(default)]
    pub relative_file_paths: Vec<String>,
}
