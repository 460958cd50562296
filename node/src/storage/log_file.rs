//! The open segment as an open file: durable cuts and durable appends of encoded lines.
//!
//! The caller (`log_dir.rs`) stages a batch (lines encoded into one reused buffer,
//! truncations applied to the staged state) and then commits it here with at most two
//! fsyncs: one after an `ftruncate` when the batch cuts into lines already on disk, one
//! after the single write of every new line. Staging first is what turns many writes into
//! one fsync (group commit).
//!
//! The file is kept longer than its lines: zeros, written and made durable ahead of the
//! appends ([`PREALLOCATE_BYTES`] at a time, never far past the segment's size limit). An
//! append that changes the file's size makes `fdatasync` write the inode as well as the
//! data, a second device write per fsync; an append into space already written needs only
//! the data write and the cache flush, about half the fsync's cost on the disks measured
//! (README, Performance). Dropping the file (a clean stop) and sealing trim the zeros; after
//! a crash, recovery cuts them like any torn tail (zeros, no newline), reporting it as a
//! note, not a warning: no byte of an entry was lost.
//!
//! New lines reach the disk by one direct, synchronous write where the filesystem allows
//! it (see `direct.rs`), or else by one `pwrite` and one `fdatasync`.

use super::direct::{DirectAppender, DirectError, BLOCK};
use super::error::{io_error, StorageError};
use super::recovery::Start;
use replog_core::{Entry, Index, Term};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The one log file of a data directory written before segments (see `log_dir.rs`).
pub(crate) const OLD_FILE_NAME: &str = "log.jsonl";

/// Zeros written ahead of the appends at a time: about 50,000 small entries, so the one
/// slower fsync that extends the file comes about once a second at full load.
const PREALLOCATE_BYTES: u64 = 8 << 20;

pub(crate) struct LogFile {
    path: PathBuf,
    file: File,
    /// The index of the segment's first line (the one in its name), and the term before.
    start: Start,
    /// Invariant: `offsets[k]` is the byte offset of the line holding index
    /// `first_index + k`, strictly increasing, each below `durable_len`. Lets a truncation
    /// find its byte offset, and a read its line, without rescanning the file.
    offsets: Vec<u64>,
    /// Invariant: `(index, term)` where each run of one term starts, for the lines in
    /// `offsets`; strictly increasing in both. What sealing needs for the last term.
    term_runs: Vec<(Index, Term)>,
    /// Invariant: the end of the last line on disk; between batches every byte of the
    /// file up to here is durable.
    durable_len: u64,
    /// Invariant: `durable_len <= allocated_len`; the file's length. Between batches the
    /// bytes from `durable_len` to here are zeros, durable too.
    allocated_len: u64,
    /// Preallocation stops here (block-aligned), or at the next block boundary after the
    /// lines if they already reach past it: zeros past the segment's size limit would be
    /// cut again at sealing without ever being used.
    allocate_limit: u64,
    /// How appends reach the disk: `Some` for direct writes, `None` for `pwrite` and
    /// `fdatasync`.
    direct: Option<DirectAppender>,
    /// Set when direct writes were refused mid-run and appends fell back; for the node's
    /// log, taken once.
    fallback_notice: Option<String>,
}

impl LogFile {
    /// Wraps the segment file at `path` whose first `len` bytes are the checked lines
    /// `entries`, starting at `offsets`; appends through `direct` if given.
    pub(crate) fn new(
        path: &Path,
        file: File,
        start: Start,
        (entries, offsets, len): (&[Entry], Vec<u64>, u64),
        segment_bytes: u64,
        direct: Option<DirectAppender>,
    ) -> LogFile {
        assert!(offsets.last().is_none_or(|&last| last < len));
        assert_eq!(entries.len(), offsets.len());
        let mut term_runs: Vec<(Index, Term)> = Vec::new();
        for entry in entries {
            if term_runs.last().is_none_or(|&(_, term)| term != entry.term) {
                term_runs.push((entry.index, entry.term));
            }
        }
        LogFile {
            path: path.to_path_buf(),
            file,
            start,
            offsets,
            term_runs,
            durable_len: len,
            allocated_len: len,
            allocate_limit: segment_bytes.next_multiple_of(BLOCK),
            direct,
            fallback_notice: None,
        }
    }

    /// Whether appends are direct writes (else `pwrite` and `fdatasync`).
    pub(crate) fn appends_directly(&self) -> bool {
        self.direct.is_some()
    }

    /// Says, once, that direct writes were refused and appends fell back.
    pub(crate) fn take_fallback_notice(&mut self) -> Option<String> {
        self.fallback_notice.take()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn first_index(&self) -> Index {
        self.start.first_index
    }

    /// The last durable index; `first_index - 1` when the segment is empty.
    pub(crate) fn last_index(&self) -> Index {
        Index(self.start.first_index.0 + self.offsets.len() as u64 - 1)
    }

    /// The term of the last durable entry, or of the one before the segment if it is empty.
    pub(crate) fn last_term(&self) -> Term {
        self.term_runs
            .last()
            .map_or(self.start.prev_term, |&(_, term)| term)
    }

    /// Bytes of durable lines.
    pub(crate) fn durable_len(&self) -> u64 {
        self.durable_len
    }

    /// The file's length: its lines and the zeros preallocated behind them.
    pub(crate) fn file_len(&self) -> u64 {
        self.allocated_len
    }

    /// Where the durable line of `index` starts; `None` outside this segment.
    pub(crate) fn offset_of(&self, index: Index) -> Option<u64> {
        let position = index.0.checked_sub(self.start.first_index.0)?;
        self.offsets.get(usize::try_from(position).ok()?).copied()
    }

    pub(crate) fn offsets(&self) -> &[u64] {
        &self.offsets
    }

    /// Cuts every line above `keep` (at least `first_index - 1`) off durably: the cut must
    /// be durable before new lines land where the old ones were; otherwise a crash could
    /// leave old and new lines interleaved mid-file, which recovery would have to refuse.
    pub(crate) fn cut_after(&mut self, keep: Index) -> Result<(), StorageError> {
        let Some(cut_at) = self.offset_of(keep.next()) else {
            return Ok(());
        };
        self.offsets
            .truncate((keep.0 + 1 - self.start.first_index.0) as usize);
        self.term_runs.retain(|&(index, _)| index <= keep);
        self.file
            .set_len(cut_at)
            .map_err(io_error(&self.path, "truncating"))?;
        self.file
            .sync_all()
            .map_err(io_error(&self.path, "fsync after truncating"))?;
        self.durable_len = cut_at;
        self.allocated_len = cut_at;
        Ok(())
    }

    /// Writes `lines` (whole encoded lines; each one's offset within `lines` and term in
    /// `starts`) behind the durable lines and returns once they are durable.
    pub(crate) fn append(
        &mut self,
        lines: &[u8],
        starts: &[(usize, Term)],
    ) -> Result<(), StorageError> {
        if lines.is_empty() {
            return Ok(());
        }
        let end = self.durable_len + lines.len() as u64;
        self.preallocate(end)?;
        self.write_durably(lines)?;
        let base = self.durable_len;
        for &(start, term) in starts {
            if term != self.last_term() || self.term_runs.is_empty() {
                self.term_runs.push((self.last_index().next(), term));
            }
            self.offsets.push(base + start as u64);
        }
        self.durable_len = end;
        Ok(())
    }

    /// Closes a file about to be removed, without trimming it first.
    pub(crate) fn discard(mut self) {
        self.allocated_len = self.durable_len;
    }

    /// Writes `lines` at `durable_len` and returns once they are durable.
    fn write_durably(&mut self, lines: &[u8]) -> Result<(), StorageError> {
        if let Some(direct) = &mut self.direct {
            match direct.append(lines, self.durable_len) {
                Ok(()) => return Ok(()),
                Err(DirectError::Failed(error)) => {
                    return Err(io_error(&self.path, "appending (direct write)")(error))
                }
                Err(DirectError::Unsupported) => {
                    // Refused before anything was written: append the buffered way.
                    self.direct = None;
                    self.fallback_notice = Some(format!(
                        "{}: the filesystem refused a direct write; appending with write \
                         and fdatasync instead",
                        self.path.display()
                    ));
                }
            }
        }
        self.file
            .write_all_at(lines, self.durable_len)
            .map_err(io_error(&self.path, "appending"))?;
        // fdatasync also persists a new length, which reading the data back needs.
        self.file
            .sync_data()
            .map_err(io_error(&self.path, "fsync after appending"))
    }

    /// Makes sure zeros follow the lines ending at `end` at least to the next block
    /// boundary (where a direct write's padding ends), writing up to [`PREALLOCATE_BYTES`]
    /// more when they do not. With buffered appends the append's own fsync makes them
    /// durable; with direct appends they are synced here, so the direct write changes no
    /// metadata.
    fn preallocate(&mut self, end: u64) -> Result<(), StorageError> {
        let needed = end.next_multiple_of(BLOCK);
        if needed <= self.allocated_len {
            return Ok(());
        }
        // The lines start in allocated space (`durable_len <= allocated_len`), and the
        // zeros from there to `allocated_len` are already on disk.
        let target = (end + PREALLOCATE_BYTES)
            .min(self.allocate_limit)
            .max(needed);
        let zeros = vec![0; (target - self.allocated_len) as usize];
        self.file
            .write_all_at(&zeros, self.allocated_len)
            .map_err(io_error(&self.path, "preallocating"))?;
        if self.direct.is_some() {
            self.file
                .sync_data()
                .map_err(io_error(&self.path, "fsync after preallocating"))?;
        }
        self.allocated_len = target;
        Ok(())
    }

    /// Cuts the preallocated zeros (or, at start-up, a torn tail) off behind the durable
    /// lines and makes the cut durable: what sealing and recovery need.
    pub(crate) fn cut_tail(&mut self) -> Result<(), StorageError> {
        self.file
            .set_len(self.durable_len)
            .map_err(io_error(&self.path, "truncating behind the last line of"))?;
        self.file.sync_all().map_err(io_error(
            &self.path,
            "fsync after truncating behind the last line of",
        ))?;
        self.allocated_len = self.durable_len;
        Ok(())
    }
}

impl Drop for LogFile {
    /// Cuts the preallocated zeros off, so a cleanly closed log holds only its lines.
    /// Best effort: if this fails, recovery cuts them at the next start, with a note.
    /// Never cuts a line that a commit made durable (the cut is at `durable_len`).
    fn drop(&mut self) {
        if self.allocated_len > self.durable_len && self.file.set_len(self.durable_len).is_ok() {
            let _ = self.file.sync_all();
        }
    }
}
