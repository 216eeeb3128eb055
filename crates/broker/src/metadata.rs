//! The broker's durable cluster metadata: cluster id, topics (id, partition count, config overrides) and the
//! producer id high-water mark.
//!
//! On-disk format: `<data-dir>/cluster-metadata.json`, one JSON document
//! `{"cluster_id": "...", "node_id": 1, "next_producer_id": 5000, "topics": {"name": {"topic_id": "uuid",
//! "partitions": 3, "configs": {"retention.ms": "1000"}}}}`. It is replaced atomically (write to
//! `cluster-metadata.json.tmp`, fsync, rename, fsync the directory), so a crash leaves either the old or the new
//! document. A later issue moves this into a Raft-replicated metadata log; the image type stays the same.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One topic as recorded in the metadata.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicRecord {
    pub topic_id: String,
    pub partitions: i32,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

/// The whole metadata document.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MetadataImage {
    pub cluster_id: String,
    pub node_id: i32,
    /// Producer ids below this have been handed out (or reserved) already.
    pub next_producer_id: i64,
    pub topics: BTreeMap<String, TopicRecord>,
}

/// Reads and atomically rewrites [`MetadataImage`].
#[derive(Debug)]
pub struct MetadataStore {
    path: PathBuf,
}

const FILE_NAME: &str = "cluster-metadata.json";

impl MetadataStore {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(FILE_NAME),
        }
    }

    /// Loads the image, or `None` on a fresh data directory.
    pub fn load(&self) -> std::io::Result<Option<MetadataImage>> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not valid cluster metadata: {e}", self.path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, image: &MetadataImage) -> std::io::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(image).map_err(std::io::Error::other)?;
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_roundtrips() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::new(dir.path());
        assert_eq!(store.load().unwrap(), None);
        let mut image = MetadataImage {
            cluster_id: "c".into(),
            node_id: 1,
            next_producer_id: 1000,
            topics: BTreeMap::new(),
        };
        image.topics.insert(
            "t".into(),
            TopicRecord {
                topic_id: "id".into(),
                partitions: 3,
                configs: [("retention.ms".into(), "5".into())].into(),
            },
        );
        store.save(&image).unwrap();
        assert_eq!(store.load().unwrap(), Some(image));
    }

    #[test]
    fn a_corrupt_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        let err = MetadataStore::new(dir.path()).load().unwrap_err();
        assert!(err.to_string().contains(FILE_NAME), "{err}");
    }
}
