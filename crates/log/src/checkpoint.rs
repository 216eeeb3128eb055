//! Small metadata files of a partition directory, and the one way they are written.
//!
//! ```text
//! log-start-offset      "0\n<i64>\n"  first offset consumers may read (moved by retention and DeleteRecords)
//! recovery-point        "0\n<i64>\n"  every offset below it was fsynced: recovery starts at its segment
//! .clean-shutdown       "0\n<i64>\n"  written last by Log::close with the log end offset; deleted by open
//! high-watermark        "0\n<i64>\n"  the last high watermark the broker persisted (Log::write_high_watermark)
//! leader-epoch-checkpoint             "0\n<count>\n" then one "<epoch> <start offset>\n" line per entry
//! producer-state.snapshot            binary, see producer_state.rs
//! ```
//! The first line is a format version (0). All are written by [`write_atomic`]: temp file, fsync, rename, fsync
//! of the directory, so a reader sees either the old or the new complete file, never a torn one. A crash can
//! leave `<name>.tmp` behind; open deletes those. A checkpoint that is missing or does not parse is treated as
//! absent: for `recovery-point` that means recovering every segment, for `log-start-offset` the first segment's
//! base offset, for the marker an unclean shutdown, for `high-watermark` no persisted value. Each fallback is
//! safe, only slower or less precise.
//!
//! `leader-epoch-checkpoint` is Kafka's file of the same name and format: the leader epoch cache (see
//! leader_epoch.rs), oldest epoch first, with `<count>` lines after the header. It is rewritten after every
//! change of the cache, and before the appended data that changed it, so the file always covers every batch on
//! disk; open drops entries past the recovered log end offset (data lost in a crash) and before the log start
//! offset. When it is missing or does not parse (wrong version, wrong count, a bad line), open rebuilds it
//! from the partitionLeaderEpoch of every batch header.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{IoContext, LogError};
use crate::leader_epoch::EpochEntry;

pub(crate) const LOG_START_OFFSET_FILE: &str = "log-start-offset";
pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point";
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";
pub(crate) const HIGH_WATERMARK_FILE: &str = "high-watermark";
pub(crate) const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";
pub(crate) const TMP_SUFFIX: &str = ".tmp";

const FORMAT_VERSION: &str = "0";

/// Replaces `dir/name` with `contents` so that a crash leaves either the old or the new file.
pub(crate) fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> Result<(), LogError> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let dest = dir.join(name);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .at(&tmp)?;
    file.write_all(contents).at(&tmp)?;
    file.sync_all().at(&tmp)?;
    drop(file);
    fs::rename(&tmp, &dest).at(&dest)?;
    sync_dir(dir)
}

/// Makes creations, renames and deletions in `dir` durable; without it a crash can resurrect or lose names.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Writes a single-value checkpoint.
pub(crate) fn write_offset(dir: &Path, name: &str, value: i64) -> Result<(), LogError> {
    write_atomic(dir, name, format!("{FORMAT_VERSION}\n{value}\n").as_bytes())
}

/// Reads a single-value checkpoint; `None` when missing or unparsable (see the module doc for the fallbacks).
pub(crate) fn read_offset(dir: &Path, name: &str) -> Result<Option<i64>, LogError> {
    let path = dir.join(name);
    let Some(text) = read_text(&path)? else {
        return Ok(None);
    };
    let mut lines = text.lines();
    let parsed = match (lines.next(), lines.next()) {
        (Some(FORMAT_VERSION), Some(v)) => v.trim().parse::<i64>().ok(),
        _ => None,
    };
    if parsed.is_none() {
        tracing::warn!(path = %path.display(), "checkpoint does not parse; ignoring it");
    }
    Ok(parsed)
}

/// Writes `leader-epoch-checkpoint`.
pub(crate) fn write_leader_epochs(dir: &Path, entries: &[EpochEntry]) -> Result<(), LogError> {
    let mut text = format!("{FORMAT_VERSION}\n{}\n", entries.len());
    for e in entries {
        text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
    }
    write_atomic(dir, LEADER_EPOCH_FILE, text.as_bytes())
}

/// Reads `leader-epoch-checkpoint` as written, without checking the entries' order (the cache sanitises them);
/// `None` when missing or unparsable.
pub(crate) fn read_leader_epochs(dir: &Path) -> Result<Option<Vec<EpochEntry>>, LogError> {
    let path = dir.join(LEADER_EPOCH_FILE);
    let Some(text) = read_text(&path)? else {
        return Ok(None);
    };
    let parsed = parse_leader_epochs(&text);
    if parsed.is_none() {
        tracing::warn!(path = %path.display(), "leader epoch checkpoint does not parse; ignoring it");
    }
    Ok(parsed)
}

fn parse_leader_epochs(text: &str) -> Option<Vec<EpochEntry>> {
    let mut lines = text.lines();
    if lines.next()? != FORMAT_VERSION {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let entries = lines
        .map(|line| {
            let mut fields = line.split_whitespace();
            let entry = EpochEntry {
                epoch: fields.next()?.parse().ok()?,
                start_offset: fields.next()?.parse().ok()?,
            };
            fields.next().is_none().then_some(entry)
        })
        .collect::<Option<Vec<_>>>()?;
    (entries.len() == count).then_some(entries)
}

/// A checkpoint's text; `None` when missing or not UTF-8.
fn read_text(path: &Path) -> Result<Option<String>, LogError> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            tracing::warn!(path = %path.display(), "checkpoint is not text; ignoring it");
            Ok(None)
        }
        Err(e) => Err(e).at(path),
    }
}

/// Removes `dir/name` if present.
pub(crate) fn remove_if_exists(path: &Path) -> Result<(), LogError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).at(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_garbage_reads_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_offset(dir.path(), "x").unwrap(), None);
        write_offset(dir.path(), "x", 42).unwrap();
        assert_eq!(read_offset(dir.path(), "x").unwrap(), Some(42));
        fs::write(dir.path().join("x"), b"9\nnope").unwrap();
        assert_eq!(read_offset(dir.path(), "x").unwrap(), None);
    }

    #[test]
    fn leader_epochs_roundtrip_in_kafkas_format() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_leader_epochs(dir.path()).unwrap(), None);
        let entries = [
            EpochEntry {
                epoch: 0,
                start_offset: 0,
            },
            EpochEntry {
                epoch: 5,
                start_offset: 1234,
            },
        ];
        write_leader_epochs(dir.path(), &entries).unwrap();
        let text = fs::read_to_string(dir.path().join(LEADER_EPOCH_FILE)).unwrap();
        assert_eq!(text, "0\n2\n0 0\n5 1234\n");
        assert_eq!(
            read_leader_epochs(dir.path()).unwrap().as_deref(),
            Some(&entries[..])
        );
        write_leader_epochs(dir.path(), &[]).unwrap();
        assert_eq!(read_leader_epochs(dir.path()).unwrap(), Some(vec![]));
    }

    #[test]
    fn damaged_leader_epochs_read_as_absent() {
        for text in [
            "1\n1\n0 0\n",
            "0\n2\n0 0\n",
            "0\n1\n0 0\n1 5\n",
            "0\n1\n0\n",
            "0\n1\n0 0 7\n",
            "0\n1\nx 0\n",
            "0\n",
            "",
        ] {
            assert_eq!(parse_leader_epochs(text), None, "{text:?}");
        }
    }
}
