//! A rosbag2 bag in the MCAP storage format, written topic by topic from CDR payloads: the
//! folder holds `<folder name>_0.mcap` (`ros2` profile, `ros2msg` schemas, CDR messages in
//! LZ4-compressed chunks) and, once finished, `metadata.yaml`, as `ros2 bag record -s mcap`
//! leaves them. LZ4 rather than rosbag2's usual zstd: every reader here, rosbags included,
//! has LZ4.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use mcap::records::{MessageHeader, Metadata};
use mcap::{Compression, WriteOptions};
use thiserror::Error;

use super::metadata::{
    BagfileInformation, DurationNs, FileInformation, MetadataFile, TimeSinceEpoch, TopicMetadata,
    TopicWithMessageCount, METADATA_VERSION,
};

/// Why a bag cannot be written. After [`WriteError::InvalidTopic`] the bag is still usable;
/// after any other error it is incomplete.
#[derive(Debug, Error)]
pub enum WriteError {
    #[error("bag folder {path} already exists: remove it or choose another bag path")]
    AlreadyExists { path: PathBuf },
    #[error("bag path {path} does not end in a folder name: give a path such as out/my_bag")]
    NoFolderName { path: PathBuf },
    #[error("bag topic {name:?} ({type_name}): {problem}")]
    InvalidTopic {
        name: String,
        type_name: String,
        problem: &'static str,
    },
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot write the MCAP file {path}: {source}")]
    Mcap {
        path: PathBuf,
        source: mcap::McapError,
    },
    #[error("cannot serialise the bag metadata: {0}")]
    Metadata(#[from] serde_yaml::Error),
}

/// A topic of a [`McapBagWriter`], as [`McapBagWriter::add_topic`] returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicId(usize);

struct TopicState {
    name: String,
    type_name: String,
    channel_id: u16,
    message_count: u64,
}

/// Writes a rosbag2 MCAP bag; [`McapBagWriter::finish`] completes it. Dropped unfinished, it
/// still closes the MCAP file, but the folder lacks the metadata.yaml that rosbag2 readers need.
pub struct McapBagWriter {
    bag_path: PathBuf,
    mcap_file_name: String,
    mcap_path: PathBuf,
    mcap: mcap::Writer<BufWriter<File>>,
    topics: Vec<TopicState>,
    /// Log times of the earliest and the latest message written.
    time_range_ns: Option<(u64, u64)>,
}

impl McapBagWriter {
    /// Creates the bag folder `path` (which must not exist yet: error otherwise, naming the
    /// path and saying to remove it or choose another) holding `<name>_0.mcap`.
    pub fn create(path: &Path) -> Result<Self, WriteError> {
        let bag_name = path
            .file_name()
            .and_then(|name| name.to_str())
            .ok_or_else(|| WriteError::NoFolderName {
                path: path.to_path_buf(),
            })?;
        // rosbag2 names the storage files after the folder, numbered from 0.
        let mcap_file_name = format!("{bag_name}_0.mcap");
        let mcap_path = path.join(&mcap_file_name);

        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            fs::create_dir_all(parent).map_err(|source| WriteError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        // create_dir, not create_dir_all: it fails if the folder exists, with no race between
        // a check and the creation.
        fs::create_dir(path).map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => WriteError::AlreadyExists {
                path: path.to_path_buf(),
            },
            _ => WriteError::Io {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let file = File::create_new(&mcap_path).map_err(|source| WriteError::Io {
            path: mcap_path.clone(),
            source,
        })?;
        let mcap = WriteOptions::new()
            .profile("ros2")
            .library(concat!("perception ", env!("CARGO_PKG_VERSION")))
            .compression(Some(Compression::Lz4))
            .create(BufWriter::new(file))
            .map_err(|source| WriteError::Mcap {
                path: mcap_path.clone(),
                source,
            })?;
        Ok(Self {
            bag_path: path.to_path_buf(),
            mcap_file_name,
            mcap_path,
            mcap,
            topics: Vec::new(),
            time_range_ns: None,
        })
    }

    /// Adds topic `name` (absolute, such as `/camera/color/image_raw`) of `type_name`
    /// (`pkg/msg/Type`) whose `ros2msg` schema is `definition` (see
    /// [`super::msg_defs::full_text`]). Topics of one type share one schema.
    pub fn add_topic(
        &mut self,
        name: &str,
        type_name: &str,
        definition: &str,
    ) -> Result<TopicId, WriteError> {
        let invalid = |problem| WriteError::InvalidTopic {
            name: name.to_string(),
            type_name: type_name.to_string(),
            problem,
        };
        if !name.starts_with('/') || name.len() < 2 {
            return Err(invalid(
                "a topic name must be absolute, such as /camera/image",
            ));
        }
        if type_name.split('/').count() != 3 {
            return Err(invalid("a type must read pkg/msg/Type"));
        }
        if self.topics.iter().any(|topic| topic.name == name) {
            return Err(invalid("the bag already has this topic"));
        }
        let mcap_error = |source| WriteError::Mcap {
            path: self.mcap_path.clone(),
            source,
        };
        // rosbag2 puts the offered QoS of each recorded publisher here. A bag written here has
        // none, and with no offers `ros2 bag play` uses its default (reliable, volatile), which
        // best-effort and reliable subscriptions both accept.
        let channel_metadata =
            BTreeMap::from([("offered_qos_profiles".to_string(), String::new())]);
        // add_schema returns the id it already gave to an identical schema.
        let schema_id = self
            .mcap
            .add_schema(type_name, "ros2msg", definition.as_bytes())
            .map_err(mcap_error)?;
        let channel_id = self
            .mcap
            .add_channel(schema_id, name, "cdr", &channel_metadata)
            .map_err(mcap_error)?;
        self.topics.push(TopicState {
            name: name.to_string(),
            type_name: type_name.to_string(),
            channel_id,
            message_count: 0,
        });
        Ok(TopicId(self.topics.len() - 1))
    }

    /// Writes one CDR-encoded message of `topic`, received at `log_time_ns` (nanoseconds since
    /// the epoch; `ros2 bag play` replays messages in this order and at these times).
    pub fn write(
        &mut self,
        topic: TopicId,
        log_time_ns: u64,
        cdr: &[u8],
    ) -> Result<(), WriteError> {
        let state = &mut self.topics[topic.0];
        let header = MessageHeader {
            channel_id: state.channel_id,
            // Informational only; wraps after 2^32 messages.
            sequence: state.message_count as u32,
            log_time: log_time_ns,
            publish_time: log_time_ns,
        };
        self.mcap
            .write_to_known_channel(&header, cdr)
            .map_err(|source| WriteError::Mcap {
                path: self.mcap_path.clone(),
                source,
            })?;
        state.message_count += 1;
        self.time_range_ns = Some(match self.time_range_ns {
            None => (log_time_ns, log_time_ns),
            Some((first, last)) => (first.min(log_time_ns), last.max(log_time_ns)),
        });
        Ok(())
    }

    /// Messages written so far, all topics together.
    pub fn message_count(&self) -> u64 {
        self.topics.iter().map(|topic| topic.message_count).sum()
    }

    /// Finishes the MCAP file (summary, footer), syncs it and writes metadata.yaml. Returns the
    /// number of messages.
    pub fn finish(mut self) -> Result<u64, WriteError> {
        let metadata_yaml = serde_yaml::to_string(&self.metadata())?;
        let mcap_error = |source| WriteError::Mcap {
            path: self.mcap_path.clone(),
            source,
        };
        // rosbag2's MCAP plugin keeps a copy of the metadata inside the file, so that
        // `ros2 bag reindex` and readers given only the .mcap file have it.
        self.mcap
            .write_metadata(&Metadata {
                name: "rosbag2".into(),
                metadata: BTreeMap::from([(
                    "serialized_metadata".to_string(),
                    metadata_yaml.clone(),
                )]),
            })
            .map_err(mcap_error)?;
        self.mcap.finish().map_err(mcap_error)?;
        let io_error = |source| WriteError::Io {
            path: self.mcap_path.clone(),
            source,
        };
        // The writer's drop would finish again and ignore errors; take the file out so that
        // flushing it reports them.
        let file = self
            .mcap
            .into_inner()
            .into_inner()
            .map_err(|err| io_error(err.into_error()))?;
        file.sync_all().map_err(io_error)?;

        let message_count = self.topics.iter().map(|topic| topic.message_count).sum();
        let metadata_path = self.bag_path.join("metadata.yaml");
        fs::write(&metadata_path, metadata_yaml).map_err(|source| WriteError::Io {
            path: metadata_path,
            source,
        })?;
        Ok(message_count)
    }

    /// metadata.yaml's content, as rosbag2 writes it for a single-file MCAP bag.
    fn metadata(&self) -> MetadataFile {
        let (starting_time_ns, duration_ns) = match self.time_range_ns {
            Some((first_ns, last_ns)) => (first_ns, last_ns - first_ns),
            None => (0, 0),
        };
        let message_count = self.topics.iter().map(|topic| topic.message_count).sum();
        let starting_time = TimeSinceEpoch {
            nanoseconds_since_epoch: starting_time_ns,
        };
        let duration = DurationNs {
            nanoseconds: duration_ns,
        };
        MetadataFile {
            rosbag2_bagfile_information: BagfileInformation {
                version: METADATA_VERSION,
                storage_identifier: "mcap".into(),
                duration,
                starting_time,
                message_count,
                topics_with_message_count: self
                    .topics
                    .iter()
                    .map(|topic| TopicWithMessageCount {
                        topic_metadata: TopicMetadata {
                            name: topic.name.clone(),
                            type_name: topic.type_name.clone(),
                            serialization_format: "cdr".into(),
                            offered_qos_profiles: Vec::new(),
                            type_description_hash: String::new(),
                        },
                        message_count: topic.message_count,
                    })
                    .collect(),
                compression_format: String::new(),
                compression_mode: String::new(),
                relative_file_paths: vec![self.mcap_file_name.clone()],
                files: vec![FileInformation {
                    path: self.mcap_file_name.clone(),
                    starting_time,
                    duration,
                    message_count,
                }],
                custom_data: BTreeMap::new(),
                ros_distro: "jazzy".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_topics_are_refused_and_the_bag_stays_usable() {
        let path =
            std::env::temp_dir().join(format!("perception_bag_writer_{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        let mut writer = McapBagWriter::create(&path).expect("new bag");
        for (name, type_name) in [("relative", "sensor_msgs/msg/Image"), ("/a", "Image")] {
            let err = writer
                .add_topic(name, type_name, "")
                .err()
                .expect("refused");
            assert!(matches!(err, WriteError::InvalidTopic { .. }), "{err}");
        }
        let id = writer
            .add_topic("/a", "std_msgs/msg/Empty", "")
            .expect("valid");
        let err = writer
            .add_topic("/a", "std_msgs/msg/Empty", "")
            .err()
            .expect("twice");
        assert!(matches!(err, WriteError::InvalidTopic { .. }), "{err}");
        writer.write(id, 5, &[0, 1, 0, 0]).expect("write");
        assert_eq!(writer.message_count(), 1);
        assert_eq!(writer.finish().expect("finish"), 1);
        let err = McapBagWriter::create(&path).err().expect("exists");
        assert!(matches!(err, WriteError::AlreadyExists { .. }), "{err}");
        fs::remove_dir_all(&path).expect("clean up");
    }
}
