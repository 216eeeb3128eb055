//! Small metadata files of a partition directory, and the one way they are written.
//!
//! ```text
//! log-start-offset      "0\n<i64>\n"  first offset consumers may read (moved by retention and DeleteRecords)
//! recovery-point        "0\n<i64>\n"  every offset below it was fsynced: recovery starts at its segment
//! .clean-shutdown       "0\n<i64>\n"  written last by Log::close with the log end offset; deleted by open
//! producer-state.snapshot            binary, see producer_state.rs
//! ```
//! The first line is a format version (0). All are written by [`write_atomic`]: temp file, fsync, rename, fsync
//! of the directory, so a reader sees either the old or the new complete file, never a torn one. A crash can
//! leave `<name>.tmp` behind; open deletes those. A checkpoint that is missing or does not parse is treated as
//! absent: for `recovery-point` that means recovering every segment, for `log-start-offset` the first segment's
//! base offset, for the marker an unclean shutdown. Each fallback is safe, only slower or less precise.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{IoContext, LogError};

pub(crate) const LOG_START_OFFSET_FILE: &str = "log-start-offset";
pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point";
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";
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
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            tracing::warn!(path = %path.display(), "checkpoint is not text; ignoring it");
            return Ok(None);
        }
        Err(e) => return Err(e).at(&path),
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
}
