//! Reads a rosbag2 bag in the MCAP storage format: a bag folder (its metadata.yaml names the
//! storage files) or a single `.mcap` file. Files are memory-mapped, so a bag larger than the
//! machine's memory reads in constant memory; messages come in file order, which is the order
//! `ros2 bag record` received them in.

use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use thiserror::Error;

use super::metadata::MetadataRead;

/// Why a bag cannot be read.
#[derive(Debug, Error)]
pub enum ReadError {
    #[error("input bag {path} does not exist: give a rosbag2 folder (with metadata.yaml) or an .mcap file")]
    Missing { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a rosbag2 metadata file ({source}): give the folder `ros2 bag record` wrote, or its .mcap file")]
    Metadata {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("bag {path} uses the '{storage}' storage; only mcap is read here: convert it with `ros2 bag convert` (output storage_id: mcap) or `rosbags-convert --dst-storage mcap`")]
    UnsupportedStorage { path: PathBuf, storage: String },
    #[error("bag {path} is compressed per file ('{format}'): decompress it with `ros2 bag convert` first (MCAP's own chunk compression is read directly)")]
    FileCompression { path: PathBuf, format: String },
    #[error("bag {path} lists no storage files in its metadata.yaml")]
    NoFiles { path: PathBuf },
    #[error("{path} is not a valid MCAP file: {source}")]
    Mcap {
        path: PathBuf,
        source: mcap::McapError,
    },
    #[error("{path}: message on topic {topic} has encoding '{encoding}', schema '{schema}'; a rosbag2 message is CDR with a ros2msg schema")]
    NotRos2 {
        path: PathBuf,
        topic: String,
        encoding: String,
        schema: String,
    },
}

/// One message of a bag: its topic, type (`pkg/msg/Type`), log time and CDR payload.
#[derive(Debug)]
pub struct BagMessage<'a> {
    pub topic: String,
    pub type_name: String,
    pub log_time_ns: u64,
    pub data: Cow<'a, [u8]>,
}

/// An opened bag; [`BagReader::messages`] iterates over it.
pub struct BagReader {
    files: Vec<(PathBuf, Mmap)>,
}

impl BagReader {
    /// Opens the bag folder or `.mcap` file at `path` and checks that each storage file is MCAP.
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        if !path.exists() {
            return Err(ReadError::Missing {
                path: path.to_path_buf(),
            });
        }
        let file_paths = if path.is_dir() {
            storage_files(path)?
        } else {
            vec![path.to_path_buf()]
        };
        let files = file_paths
            .into_iter()
            .map(|file_path| {
                let io_error = |source| ReadError::Io {
                    path: file_path.clone(),
                    source,
                };
                let file = File::open(&file_path).map_err(io_error)?;
                // SAFETY: the map is read-only; a bag file truncated by another process while
                // it is read is outside what this reader guards against (as with any mmap).
                let map = unsafe { Mmap::map(&file) }.map_err(io_error)?;
                if !map.starts_with(mcap::MAGIC) {
                    return Err(ReadError::UnsupportedStorage {
                        path: file_path.clone(),
                        storage: "not MCAP (no MCAP magic bytes)".into(),
                    });
                }
                Ok((file_path, map))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { files })
    }

    /// Every message of every storage file, in file order. A corrupt record ends the iteration
    /// with an error naming the file.
    pub fn messages(&self) -> impl Iterator<Item = Result<BagMessage<'_>, ReadError>> + '_ {
        self.files.iter().flat_map(|(path, map)| {
            let stream = mcap::MessageStream::new(map).map_err(|source| ReadError::Mcap {
                path: path.clone(),
                source,
            });
            let (stream, opened) = match stream {
                Ok(stream) => (Some(stream), None),
                Err(e) => (None, Some(Err(e))),
            };
            opened
                .into_iter()
                .chain(stream.into_iter().flatten().map(move |message| {
                    let message = message.map_err(|source| ReadError::Mcap {
                        path: path.clone(),
                        source,
                    })?;
                    let channel = &message.channel;
                    let schema = channel.schema.as_ref();
                    let ros2 = channel.message_encoding == "cdr"
                        && schema
                            .is_some_and(|s| s.encoding == "ros2msg" || s.encoding == "ros2idl");
                    if !ros2 {
                        return Err(ReadError::NotRos2 {
                            path: path.clone(),
                            topic: channel.topic.clone(),
                            encoding: channel.message_encoding.clone(),
                            schema: schema.map(|s| s.encoding.clone()).unwrap_or_default(),
                        });
                    }
                    Ok(BagMessage {
                        topic: channel.topic.clone(),
                        type_name: schema.map(|s| s.name.clone()).unwrap_or_default(),
                        log_time_ns: message.log_time,
                        data: message.data,
                    })
                }))
        })
    }
}

/// The storage files of a bag folder, from its metadata.yaml (rosbag2's own source of truth),
/// or every `.mcap` file in it, sorted, when there is no metadata.yaml (a bag still recording,
/// or one copied without it).
fn storage_files(folder: &Path) -> Result<Vec<PathBuf>, ReadError> {
    let metadata_path = folder.join("metadata.yaml");
    if !metadata_path.exists() {
        let entries = std::fs::read_dir(folder).map_err(|source| ReadError::Io {
            path: folder.to_path_buf(),
            source,
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == "mcap"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(ReadError::NoFiles {
                path: folder.to_path_buf(),
            });
        }
        return Ok(files);
    }
    let text = std::fs::read_to_string(&metadata_path).map_err(|source| ReadError::Io {
        path: metadata_path.clone(),
        source,
    })?;
    let metadata: MetadataRead =
        serde_yaml::from_str(&text).map_err(|source| ReadError::Metadata {
            path: metadata_path.clone(),
            source,
        })?;
    let info = metadata.rosbag2_bagfile_information;
    if info.storage_identifier != "mcap" {
        return Err(ReadError::UnsupportedStorage {
            path: folder.to_path_buf(),
            storage: info.storage_identifier,
        });
    }
    if !info.compression_format.is_empty() {
        return Err(ReadError::FileCompression {
            path: folder.to_path_buf(),
            format: info.compression_format,
        });
    }
    if info.relative_file_paths.is_empty() {
        return Err(ReadError::NoFiles {
            path: folder.to_path_buf(),
        });
    }
    Ok(info
        .relative_file_paths
        .iter()
        .map(|file| folder.join(file))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bag::msg_defs::full_text;
    use crate::bag::McapBagWriter;

    /// A folder under the system temp folder, removed before use and on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "perception_bag_reader_{}_{name}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&path);
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn write_two_topics(path: &Path) {
        let mut writer = McapBagWriter::create(path).expect("new bag");
        let image = writer
            .add_topic(
                "/cam/image",
                "sensor_msgs/msg/Image",
                &full_text("sensor_msgs/msg/Image").expect("known"),
            )
            .expect("topic");
        let grasps = writer
            .add_topic(
                "/grasps",
                "perception_msgs/msg/GraspArray",
                &full_text("perception_msgs/msg/GraspArray").expect("known"),
            )
            .expect("topic");
        for i in 0..3u8 {
            writer
                .write(image, 100 + u64::from(i), &[i, 1])
                .expect("write");
            writer
                .write(grasps, 100 + u64::from(i), &[i, 2])
                .expect("write");
        }
        assert_eq!(writer.finish().expect("finish"), 6);
    }

    #[test]
    fn written_messages_read_back_in_order_with_topic_and_type() {
        let dir = TempDir::new("round_trip");
        let bag = dir.0.join("bag");
        write_two_topics(&bag);
        for path in [bag.clone(), bag.join("bag_0.mcap")] {
            let reader = BagReader::open(&path).expect("opens");
            let messages: Vec<_> = reader.messages().collect::<Result<_, _>>().expect("reads");
            assert_eq!(messages.len(), 6);
            for (k, message) in messages.iter().enumerate() {
                let i = (k / 2) as u8;
                let (topic, type_name, tag) = if k % 2 == 0 {
                    ("/cam/image", "sensor_msgs/msg/Image", 1)
                } else {
                    ("/grasps", "perception_msgs/msg/GraspArray", 2)
                };
                assert_eq!(message.topic, topic);
                assert_eq!(message.type_name, type_name);
                assert_eq!(message.log_time_ns, 100 + u64::from(i));
                assert_eq!(&message.data[..], &[i, tag]);
            }
        }
    }

    #[test]
    fn metadata_counts_messages_per_topic() {
        let dir = TempDir::new("metadata");
        let bag = dir.0.join("bag");
        write_two_topics(&bag);
        let text = std::fs::read_to_string(bag.join("metadata.yaml")).expect("metadata");
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
        let info = &yaml["rosbag2_bagfile_information"];
        assert_eq!(info["message_count"], 6);
        assert_eq!(info["starting_time"]["nanoseconds_since_epoch"], 100);
        assert_eq!(info["duration"]["nanoseconds"], 2);
        let topics = info["topics_with_message_count"]
            .as_sequence()
            .expect("list");
        assert_eq!(topics.len(), 2);
        assert_eq!(topics[1]["topic_metadata"]["name"], "/grasps");
        assert_eq!(topics[1]["message_count"], 3);
    }

    #[test]
    fn a_bag_without_metadata_is_read_from_its_mcap_files() {
        let dir = TempDir::new("no_metadata");
        let bag = dir.0.join("bag");
        write_two_topics(&bag);
        std::fs::remove_file(bag.join("metadata.yaml")).expect("remove");
        let reader = BagReader::open(&bag).expect("opens");
        assert_eq!(reader.messages().count(), 6);
    }

    #[test]
    fn unreadable_bags_are_named_with_the_fix() {
        let dir = TempDir::new("errors");
        let missing = BagReader::open(&dir.0.join("nothing"))
            .err()
            .expect("missing");
        assert!(matches!(missing, ReadError::Missing { .. }), "{missing}");

        let sqlite = dir.0.join("sqlite_bag");
        std::fs::create_dir_all(&sqlite).expect("folder");
        std::fs::write(
            sqlite.join("metadata.yaml"),
            "rosbag2_bagfile_information:\n  version: 9\n  storage_identifier: sqlite3\n  relative_file_paths: [sqlite_bag_0.db3]\n",
        )
        .expect("write");
        let err = BagReader::open(&sqlite).err().expect("sqlite3 refused");
        assert!(err.to_string().contains("ros2 bag convert"), "{err}");

        let not_mcap = dir.0.join("not.mcap");
        std::fs::write(&not_mcap, b"SQLite format 3\0").expect("write");
        let err = BagReader::open(&not_mcap).err().expect("not mcap refused");
        assert!(matches!(err, ReadError::UnsupportedStorage { .. }), "{err}");

        let empty = dir.0.join("empty");
        std::fs::create_dir_all(&empty).expect("folder");
        let err = BagReader::open(&empty).err().expect("empty refused");
        assert!(matches!(err, ReadError::NoFiles { .. }), "{err}");
    }

    #[test]
    fn a_truncated_file_ends_with_an_error_not_a_panic() {
        let dir = TempDir::new("truncated");
        let bag = dir.0.join("bag");
        write_two_topics(&bag);
        let mcap = bag.join("bag_0.mcap");
        let bytes = std::fs::read(&mcap).expect("read");
        std::fs::write(&mcap, &bytes[..bytes.len() / 2]).expect("truncate");
        let reader = BagReader::open(&bag).expect("opens");
        let results: Vec<_> = reader.messages().collect();
        assert!(results.iter().any(Result::is_err));
    }
}
