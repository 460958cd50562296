//! `log.jsonl` as an open file: staged truncations and appends, made durable together.
//!
//! A batch is staged in memory first (lines encoded into one reused buffer, truncations
//! applied to the offset table) and then committed with at most two fsyncs: one after an
//! `ftruncate` when the batch cuts into lines already on disk, one after the single write
//! of every new line. Staging first is what turns many writes into one fsync (group
//! commit).
//!
//! The file is kept longer than its lines: zeros, written and made durable ahead of the
//! appends ([`PREALLOCATE_BYTES`] at a time). An append that changes the file's size makes
//! `fdatasync` write the inode as well as the data, a second device write per fsync; an
//! append into space already written needs only the data write and the cache flush. On
//! this machine's virtio disk that halves the fsync (raw: 144 us appending, 71 us
//! overwriting) and the CPU time each one costs. Dropping the file (a clean stop) trims
//! the zeros; after a crash, recovery cuts them like any torn tail (zeros, no newline).

use super::error::{io_error, StorageError};
use super::line::encode_entry;
use replog_core::{Entry, Index};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub(crate) const FILE_NAME: &str = "log.jsonl";

/// A staging buffer that grew beyond this is shrunk after its batch, so one huge batch
/// does not pin its memory for the node's lifetime.
const STAGED_CAPACITY_KEEP_BYTES: usize = 4 << 20;
/// Zeros written ahead of the appends at a time: about 50,000 small entries, so the one
/// slower fsync that extends the file comes about once a second at full load.
const PREALLOCATE_BYTES: u64 = 8 << 20;

pub(crate) struct LogFile {
    path: PathBuf,
    file: File,
    /// Invariant: `offsets[k]` is the byte offset of the line holding index `k + 1`, for
    /// lines on disk and staged alike; strictly increasing. Lets a truncation find its byte
    /// offset without rescanning the file.
    offsets: Vec<u64>,
    /// Invariant: the end of the last line on disk; between batches every byte of the
    /// file up to here is durable.
    durable_len: u64,
    /// Invariant: `durable_len <= allocated_len`; the file's length. Between batches the
    /// bytes from `durable_len` to here are zeros, durable too.
    allocated_len: u64,
    /// Invariant: `staged_start <= durable_len`. Staged bytes belong at this offset; when it
    /// is below `durable_len`, the file must first be cut back to it.
    staged_start: u64,
    /// Encoded lines waiting for the next commit. Reused across batches.
    staged: Vec<u8>,
}

impl LogFile {
    /// Wraps a file whose first `len` bytes are the checked lines starting at `offsets`.
    pub(crate) fn new(path: &Path, file: File, offsets: Vec<u64>, len: u64) -> LogFile {
        assert!(offsets.last().is_none_or(|&last| last < len));
        LogFile {
            path: path.to_path_buf(),
            file,
            offsets,
            durable_len: len,
            allocated_len: len,
            staged_start: len,
            staged: Vec::new(),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The last index, counting staged entries.
    pub(crate) fn last_index(&self) -> Index {
        Index(self.offsets.len() as u64)
    }

    /// Drops every entry above `after`; a no-op when the log does not reach past it.
    pub(crate) fn stage_truncate(&mut self, after: Index) {
        if after >= self.last_index() {
            return;
        }
        let cut_at = self.offsets[after.0 as usize];
        self.offsets.truncate(after.0 as usize);
        if cut_at >= self.staged_start {
            self.staged.truncate((cut_at - self.staged_start) as usize);
        } else {
            self.staged.clear();
            self.staged_start = cut_at;
        }
    }

    /// Encodes `entries` behind the current last entry.
    ///
    /// Panics if they do not continue the log: the core promised contiguous writes, and
    /// writing a gap would poison the file for every later start.
    pub(crate) fn stage_append(&mut self, entries: &[Entry]) {
        for entry in entries {
            assert_eq!(
                entry.index,
                self.last_index().next(),
                "write does not continue the log"
            );
            self.offsets
                .push(self.staged_start + self.staged.len() as u64);
            encode_entry(entry, &mut self.staged);
        }
    }

    /// Makes everything staged durable: cut (and fsync) if needed, then one write and one
    /// fsync for every staged line.
    pub(crate) fn commit(&mut self) -> Result<(), StorageError> {
        if self.staged_start < self.durable_len {
            // The cut must be durable before new lines land where the old ones were;
            // otherwise a crash could leave old and new lines interleaved mid-file, which
            // recovery would have to refuse.
            self.file
                .set_len(self.staged_start)
                .map_err(io_error(&self.path, "truncating"))?;
            self.file
                .sync_all()
                .map_err(io_error(&self.path, "fsync after truncating"))?;
            self.durable_len = self.staged_start;
            self.allocated_len = self.staged_start;
        }
        if !self.staged.is_empty() {
            self.file
                .write_all_at(&self.staged, self.staged_start)
                .map_err(io_error(&self.path, "appending"))?;
            self.preallocate(self.staged_start + self.staged.len() as u64)?;
            // fdatasync also persists a new length, which reading the data back needs.
            self.file
                .sync_data()
                .map_err(io_error(&self.path, "fsync after appending"))?;
            self.durable_len += self.staged.len() as u64;
        }
        self.staged_start = self.durable_len;
        self.staged.clear();
        if self.staged.capacity() > STAGED_CAPACITY_KEEP_BYTES {
            self.staged.shrink_to(STAGED_CAPACITY_KEEP_BYTES);
        }
        Ok(())
    }

    /// Writes zeros from the end of the file to well past `end` when the lines would
    /// reach beyond it; the caller's fsync makes them durable with the lines.
    fn preallocate(&mut self, end: u64) -> Result<(), StorageError> {
        if end <= self.allocated_len {
            return Ok(());
        }
        // The lines start in allocated space (`staged_start <= allocated_len`), so the
        // zeros go right after them.
        let zeros = vec![0; PREALLOCATE_BYTES as usize];
        self.file
            .write_all_at(&zeros, end)
            .map_err(io_error(&self.path, "preallocating"))?;
        self.allocated_len = end + PREALLOCATE_BYTES;
        Ok(())
    }

    /// Cuts a torn tail off at start-up and makes the cut durable.
    pub(crate) fn cut_torn_tail(&mut self) -> Result<(), StorageError> {
        self.file
            .set_len(self.durable_len)
            .map_err(io_error(&self.path, "truncating the torn final line"))?;
        self.file.sync_all().map_err(io_error(
            &self.path,
            "fsync after truncating the torn final line",
        ))
    }
}

impl Drop for LogFile {
    /// Cuts the preallocated zeros off, so a cleanly closed log holds only its lines.
    /// Best effort: if this fails, recovery cuts them at the next start, with a warning.
    /// Never cuts a line that a commit made durable (the cut is at `durable_len`).
    fn drop(&mut self) {
        if self.allocated_len > self.durable_len && self.file.set_len(self.durable_len).is_ok() {
            let _ = self.file.sync_all();
        }
    }
}
