//! A data directory written before segments: its one `log.jsonl` becomes the first segment.
//!
//! The file is checked with exactly the rules of the open segment (`recovery::scan`, and
//! the checks against `metadata.json`) before anything changes, so a start refused for
//! damage leaves the directory as it was, naming `log.jsonl`. Then it is moved, as it is,
//! to `log/00000000000000000001.jsonl` (rename, then fsync of both directories), and the
//! ordinary recovery of the open segment cuts its torn tail or preallocated zeros, if any,
//! with the usual warning or note. (The cut happens after the move, not before as issue 9
//! sketched: one code path for it, and the move itself is the one step that changes the
//! directory.)
//!
//! Crash safety: rename(2) is atomic, so a crash leaves the file under its old name or its
//! new one; `log/` created empty before it is harmless (`log.jsonl` is converted again).
//! Both names existing cannot be left by the rename, except as two links to one file on a
//! filesystem whose rename a crash interrupts: then they are the same file (same inode)
//! and the segment wins, `log.jsonl` being only the old name. Two different files are two
//! logs, and recovery refuses to guess which one is this node's.

use super::error::{io_error, StorageError};
use super::log_file::OLD_FILE_NAME;
use super::metadata::{sync_dir, Metadata};
use super::recovery::{self, Start};
use super::segment::{self, Name};
use super::{check_consistent, fresh_metadata, LogTail};
use replog_core::Index;
use std::fs::{self, File};
use std::io::{BufReader, ErrorKind};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Converts `<dir>/log.jsonl` if there is one; returns the note saying so.
pub(crate) fn convert(dir: &Path, meta: Option<&Metadata>) -> Result<Option<String>, StorageError> {
    let old = dir.join(OLD_FILE_NAME);
    let Some(old_file) = stat(&old)? else {
        return Ok(None);
    };
    let log_dir = dir.join(segment::DIR_NAME);
    let first = segment::segment_path(&log_dir, Index(1));
    if let Some(first_file) = stat(&first)? {
        if (first_file.dev(), first_file.ino()) == (old_file.dev(), old_file.ino()) {
            fs::remove_file(&old).map_err(io_error(&old, "removing"))?;
            sync_dir(dir)?;
            return Ok(Some(format!(
                "removed {}, a second name of {} left by an interrupted conversion",
                old.display(),
                first.display()
            )));
        }
    }
    if holds_segments(&log_dir)? {
        return Err(StorageError::Inconsistent {
            path: old,
            problem: format!(
                "this file (the log before segments) and the segments in {} are two logs; \
                 refusing to guess which one is this node's",
                log_dir.display()
            ),
        });
    }
    let count = check(dir, &old, meta)?;
    match fs::create_dir(&log_dir) {
        Ok(()) => sync_dir(dir)?,
        Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
        Err(error) => return Err(io_error(&log_dir, "creating directory")(error)),
    }
    fs::rename(&old, &first).map_err(io_error(&first, "moving log.jsonl to"))?;
    sync_dir(&log_dir)?;
    sync_dir(dir)?;
    Ok(Some(format!(
        "converted {} ({count} entries) to the segment layout: it is now {}",
        old.display(),
        first.display()
    )))
}

/// Whether `path` exists (its metadata if so).
fn stat(path: &Path) -> Result<Option<fs::Metadata>, StorageError> {
    match fs::metadata(path) {
        Ok(found) => Ok(Some(found)),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io_error(path, "checking for")(error)),
    }
}

fn holds_segments(log_dir: &Path) -> Result<bool, StorageError> {
    let entries = match fs::read_dir(log_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(io_error(log_dir, "listing")(error)),
    };
    for entry in entries {
        let entry = entry.map_err(io_error(log_dir, "listing"))?;
        if matches!(
            segment::parse_name(&entry.file_name().to_string_lossy()),
            Name::Segment(_)
        ) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Today's recovery rules on the old file, read only; returns how many entries it holds.
fn check(dir: &Path, old: &Path, meta: Option<&Metadata>) -> Result<usize, StorageError> {
    let file = File::open(old).map_err(io_error(old, "opening"))?;
    let len = file
        .metadata()
        .map_err(io_error(old, "reading the length of"))?
        .len();
    let scanned = recovery::scan(old, BufReader::with_capacity(1 << 16, &file), Start::LOG)?;
    let Some(meta) = meta else {
        fresh_metadata(dir, old, len > 0)?;
        return Ok(0);
    };
    let count = scanned.entries.len() as u64;
    let tail = LogTail {
        path: old,
        last_index: Index(count),
        last_line: scanned.entries.last().map(|entry| (entry.term, count)),
        torn: scanned.torn.as_ref(),
    };
    check_consistent(dir, &tail, meta)?;
    Ok(scanned.entries.len())
}
