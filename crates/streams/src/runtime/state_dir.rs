//! The state directory: `<state.dir>/<application.id>/<task>/` holds a task's persistent stores (one
//! directory each) and its `.checkpoint`.
//!
//! `.checkpoint` (text, one line per logged store): `<changelog topic> <partition> <offset>`: the changelog offset
//! the store holds everything below. It is written only at a clean close, after the stores were flushed, and
//! deleted when the task opens, so after a crash there is none: the persistent stores are then wiped and
//! restored from the whole changelog (their contents could be ahead of what the changelog and the committed
//! input offsets agree on). With a checkpoint, restore replays the changelog from its offset only.
//!
//! `<state.dir>/<application.id>/process-id` (text, one line): the instance's process id under exactly-once, part
//! of its producers' `transactional.id`s. Kept across restarts (as Kafka Streams keeps its process id in the
//! state directory), so an instance restarted after a crash fences its predecessor's producers at once and
//! aborts the transactions they left open, instead of waiting for `transaction.timeout.ms`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::processor::TaskId;

pub(crate) fn task_dir(state_dir: &Path, application_id: &str, task: TaskId) -> PathBuf {
    state_dir.join(application_id).join(task.to_string())
}

/// Reads and deletes the task's checkpoint: changelog topic → offset. Missing or unreadable: empty.
pub(crate) fn take_checkpoint(dir: &Path) -> BTreeMap<String, i64> {
    let path = dir.join(".checkpoint");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return BTreeMap::new();
    };
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove the checkpoint; restoring in full");
        return BTreeMap::new();
    }
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let topic = parts.next()?;
            let _partition = parts.next()?;
            let offset = parts.next()?.parse().ok()?;
            Some((topic.to_string(), offset))
        })
        .collect()
}

/// Writes the checkpoint atomically (temporary file, fsync, rename).
pub(crate) fn write_checkpoint(
    dir: &Path,
    partition: i32,
    offsets: &BTreeMap<String, i64>,
) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(".checkpoint.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    for (topic, offset) in offsets {
        writeln!(file, "{topic} {partition} {offset}")?;
    }
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(".checkpoint"))
}

/// The process id kept in the application's state directory, created on first use.
pub(crate) fn process_id(state_dir: &Path, application_id: &str) -> std::io::Result<String> {
    use std::io::Write;
    let dir = state_dir.join(application_id);
    let path = dir.join("process-id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim();
        if !id.is_empty() {
            return Ok(id.to_string());
        }
    }
    std::fs::create_dir_all(&dir)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = format!("{:x}-{nanos:x}", std::process::id());
    let tmp = dir.join("process-id.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    writeln!(file, "{id}")?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let offsets = BTreeMap::from([("app-s-changelog".to_string(), 42)]);
        write_checkpoint(dir.path(), 3, &offsets).unwrap();
        assert_eq!(take_checkpoint(dir.path()), offsets);
        assert!(take_checkpoint(dir.path()).is_empty(), "deleted when read");
    }

    #[test]
    fn the_process_id_is_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = process_id(dir.path(), "app").unwrap();
        assert_eq!(process_id(dir.path(), "app").unwrap(), first);
        assert_ne!(process_id(dir.path(), "other-app").unwrap(), "");
    }
}
