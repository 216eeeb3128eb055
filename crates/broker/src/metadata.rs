//! Upgrading a data directory from the single-node layout, where the metadata was one JSON document,
//! `<data-dir>/cluster-metadata.json`:
//! `{"cluster_id": "...", "node_id": 1, "next_producer_id": 5000, "topics": {"name": {"topic_id": "uuid",
//! "partitions": 3, "configs": {"retention.ms": "1000"}}}}`.
//!
//! On the first start with the Raft metadata log, a node that finds this file and no log starts its log from a
//! snapshot holding the same topics (each partition on this node), configs and producer-id high-water mark,
//! keeps the cluster id, and renames the file to `cluster-metadata.json.migrated`. A file for another node id,
//! or an unreadable one, is refused with a message and nothing is changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use strom_metadata::{DurableState, MetadataDisk, MetadataImage, PartitionImage, TopicImage};

const LEGACY_FILE: &str = "cluster-metadata.json";

#[derive(Debug, Deserialize)]
struct LegacyTopic {
    topic_id: String,
    partitions: i32,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct LegacyImage {
    cluster_id: String,
    node_id: i32,
    next_producer_id: i64,
    topics: BTreeMap<String, LegacyTopic>,
}

fn legacy_path(data_dir: &Path) -> PathBuf {
    data_dir.join(LEGACY_FILE)
}

fn read_legacy(data_dir: &Path) -> std::io::Result<Option<LegacyImage>> {
    let path = legacy_path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} is not valid single-node metadata, so it cannot be upgraded: {e}",
                    path.display()
                ),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The cluster id and node id of a single-node data directory not yet upgraded.
pub fn legacy_identity(data_dir: &Path) -> std::io::Result<Option<(String, i32)>> {
    Ok(read_legacy(data_dir)?.map(|l| (l.cluster_id, l.node_id)))
}

/// The durable state a node starts from when its metadata log is empty: the legacy document's content, or a
/// fresh log. It is created in `disk` before the legacy document is renamed, so a crash in between upgrades
/// again on the next start.
pub fn initial_state(
    data_dir: &Path,
    node_id: i32,
    voters: &[i32],
    disk: &mut MetadataDisk,
) -> std::io::Result<DurableState> {
    let Some(legacy) = read_legacy(data_dir)? else {
        let state = DurableState::initial(voters);
        disk.create(&state).map_err(std::io::Error::other)?;
        return Ok(state);
    };
    if legacy.node_id != node_id {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} belongs to node.id {}, but this node is node.id {node_id}; nothing was changed",
                legacy_path(data_dir).display(),
                legacy.node_id
            ),
        ));
    }
    let mut image = MetadataImage {
        next_producer_id: legacy.next_producer_id,
        ..MetadataImage::default()
    };
    for (name, topic) in legacy.topics {
        let partitions = (0..topic.partitions)
            .map(|p| {
                (
                    p,
                    PartitionImage::new(vec![node_id], vec![node_id], node_id, 0),
                )
            })
            .collect();
        image.topics.insert(
            name.clone(),
            TopicImage {
                name,
                topic_id: topic.topic_id,
                partitions,
                configs: topic.configs,
            },
        );
    }
    let state = DurableState::from_image(voters, &image);
    disk.create(&state).map_err(std::io::Error::other)?;
    let path = legacy_path(data_dir);
    std::fs::rename(&path, path.with_extension("json.migrated"))?;
    tracing::info!(
        topics = image.topics.len(),
        "upgraded {} to the Raft metadata log",
        path.display()
    );
    Ok(state)
}
