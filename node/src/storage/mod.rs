//! Durable storage for one node: `<data-dir>/<node-id>/log.jsonl` and `metadata.json`.
//!
//! The runtime's storage thread owns a [`Storage`]: [`Storage::open`] reads back what is
//! durable at start, [`Storage::persist`] makes the core's `Persist` writes durable (group
//! commit), and [`Storage::record_commit_index`] keeps a restart hint.
//!
//! ## Files
//! - `log.jsonl`: one entry per line, `{"crc":"574e94ba","index":7,"term":2,"command":"set x=1"}`
//!   or `{"crc":"35927822","index":1,"term":1,"noop":true}`; see `line.rs`.
//! - `metadata.json`: `{"current_term":3,"voted_for":2,"commit_index":17}`, replaced
//!   atomically; see `metadata.rs`.
//!
//! ## Why a crash never loses what was reported durable, nor invents anything
//! - `persist` returns only after fsync; the runtime reports `Persisted` only after that.
//! - Hard state goes first: `metadata.json` is replaced (temp file, fsync, rename, fsync of
//!   the directory) before any line of the same batch is written. So a log line never
//!   reaches disk before the term it carries, and a vote is durable before anything that
//!   followed it. Writing the batch's *last* hard state at once is safe: terms only grow,
//!   and a crash mid-batch loses only unacknowledged work.
//! - A truncation cuts the file at the recorded byte offset of the first dropped line and
//!   fsyncs before new lines are written, so old and new lines can never interleave.
//! - Appends are one direct, synchronous write (`O_DIRECT | O_DSYNC`, rewriting the last
//!   partial block with its durable bytes unchanged; see `direct.rs`), or, where the
//!   filesystem refuses that, one `pwrite` after the last line then one `fdatasync`; the
//!   next batch is written only after that returned. The file runs on past its lines into
//!   zeros written ahead of time (so that most appends do not change its size, which would
//!   cost an inode write; see `log_file.rs`), trimmed when the log is closed. So at most
//!   one batch is ever unacknowledged, and it is the last thing in the file. A crash
//!   during it leaves each 512-byte sector of it written or still zero, in any mix: the
//!   disk need not write the sectors of one write in order. Recovery cuts at the first
//!   damaged line when nothing follows it (a last line without a newline, with a bad
//!   checksum, or zeros) or when it holds zero-filled sectors (our encoder never writes a
//!   zero byte, so they are sectors that write never reached); in the second case the lines
//!   behind it, parts of the same unfinished batch, go too. Either way nothing acknowledged
//!   is cut, and the warning says what was. Damage without zero-filled sectors before other
//!   lines, or a bad sequence in checksummed lines, fails `open` with the file and line.
//!   See `recovery.rs` for the exact rule and what it assumes of the disk.
//! - A fresh directory gets an empty `log.jsonl`, then `metadata.json`. So a missing
//!   `metadata.json` next to a non-empty log, or a missing log next to `metadata.json`,
//!   means damage, and is reported rather than treated as a fresh node.
//! - The commit index in metadata is never ahead of the durable log, and truncations below
//!   it are refused, so recovery can insist `commit_index <= last index`. That is also the
//!   safety net under the cut: a cut that would drop a committed entry (media damage that
//!   looks like a tear) fails `open` instead.
//! - Any failed call poisons the handle: after a failed fsync the kernel may have dropped
//!   the dirty pages, so retrying could report success for lost data. The node must stop.

mod direct;
mod error;
mod line;
mod log_file;
mod metadata;
mod recovery;

pub use error::{LineProblem, StorageError};

use direct::DirectAppender;
use error::io_error;
use log_file::LogFile;
use metadata::Metadata;
use replog_core::{HardState, Index, NodeId, Recovered, Write};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a newer commit index may wait before it is written to `metadata.json`. It is
/// only a hint for restart, and each write costs two fsyncs, so it is written at most this
/// often (or sooner, with a hard-state change).
const COMMIT_HINT_INTERVAL: Duration = Duration::from_millis(100);

/// How new log lines reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendMode {
    /// One `O_DIRECT | O_DSYNC` write per batch where the filesystem supports it (see
    /// `direct.rs`), else as `Buffered`.
    Direct,
    /// One `pwrite` and one `fdatasync` per batch.
    Buffered,
}

/// What happened while reading the files back, for the node's log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Repairs made, e.g. "truncated torn final line 57 of data/1/log.jsonl (23 bytes): ...",
    /// or "truncated torn line 57 of data/1/log.jsonl and everything after it (1456 bytes):
    /// ...; 3 complete lines after it were part of the same unfinished write and are
    /// dropped too".
    pub warnings: Vec<String>,
    /// Routine clean-up that lost no byte of any entry, e.g. "cut 8388421 bytes of unused
    /// preallocated space (zeros) after the last line of data/1/log.jsonl": what every
    /// crash or kill leaves. For the node's log at info level, not as a warning.
    pub notes: Vec<String>,
}

/// The open storage of one node.
pub struct Storage {
    dir: PathBuf,
    log: LogFile,
    /// Invariant: exactly what `metadata.json` holds on disk.
    metadata: Metadata,
    /// Invariant: `metadata.commit_index <= commit_index <= log.last_index()` between calls.
    /// The newest commit index the runtime reported; written lazily.
    commit_index: Index,
    last_metadata_write: Instant,
    /// Set by any failed call: the files may no longer match this handle.
    poisoned: bool,
}

impl Storage {
    /// Opens (creating if absent) `<data_dir>/<node_id>/` and reads back what is durable.
    ///
    /// What an interrupted write left (a torn final log line, or a line holding zero-filled
    /// sectors and everything behind it) is cut off and reported in the [`RecoveryReport`];
    /// any other damage is an error naming the file (and line), and nothing is changed on
    /// disk.
    pub fn open(
        data_dir: &Path,
        node_id: NodeId,
    ) -> Result<(Storage, Recovered, RecoveryReport), StorageError> {
        Storage::open_with(data_dir, node_id, AppendMode::Direct)
    }

    /// [`Storage::open`], choosing how appends reach the disk.
    pub fn open_with(
        data_dir: &Path,
        node_id: NodeId,
        mode: AppendMode,
    ) -> Result<(Storage, Recovered, RecoveryReport), StorageError> {
        let dir = data_dir.join(node_id.0.to_string());
        create_dir_durably(&dir)?;
        let log_path = dir.join(log_file::FILE_NAME);
        let stored = metadata::read(&dir)?;
        if stored.is_some() {
            require_log(&log_path)?;
        }
        let (file, log_len) = open_log(&log_path)?;
        // The log file may have just been created; make its directory entry durable.
        metadata::sync_dir(&dir)?;
        let scanned = recovery::scan(&log_path, BufReader::with_capacity(1 << 16, &file))?;
        let meta = match stored {
            Some(meta) => meta,
            None => fresh_metadata(&dir, &log_path, log_len)?,
        };
        check_consistent(&dir, &log_path, &scanned, &meta)?;
        if stored.is_none() {
            metadata::write(&dir, &meta)?;
        }
        let direct = match mode {
            AppendMode::Direct => DirectAppender::open(&log_path)
                .map_err(io_error(&log_path, "opening for direct writes"))?,
            AppendMode::Buffered => None,
        };
        let mut log = LogFile::new(&log_path, file, scanned.offsets, scanned.valid_len, direct);
        let mut report = RecoveryReport::default();
        if let Some(torn) = &scanned.torn {
            log.cut_torn_tail()?;
            if torn.zeros_only {
                report.notes.push(format!(
                    "cut {} bytes of unused preallocated space (zeros) after the last line \
                     of {}",
                    torn.bytes,
                    log_path.display()
                ));
            } else {
                report.warnings.push(torn_warning(&log_path, torn));
            }
        }
        let recovered = Recovered {
            hard_state: meta.hard_state,
            entries: scanned.entries,
            commit_index: meta.commit_index,
        };
        let storage = Storage {
            dir,
            log,
            metadata: meta,
            commit_index: meta.commit_index,
            last_metadata_write: Instant::now(),
            poisoned: false,
        };
        Ok((storage, recovered, report))
    }

    /// How appends reach the disk now; `Buffered` where direct writes are unsupported.
    pub fn append_mode(&self) -> AppendMode {
        if self.log.appends_directly() {
            AppendMode::Direct
        } else {
            AppendMode::Buffered
        }
    }

    /// Says, once, that the filesystem refused direct writes mid-run and appends fell
    /// back to buffered writes (as durable, somewhat slower).
    pub fn take_fallback_notice(&mut self) -> Option<String> {
        self.log.take_fallback_notice()
    }

    /// Applies every write in order (hard state, truncation, entries) and makes them all
    /// durable: at most one metadata replacement, one cut and one durable log write for the whole
    /// batch. Returns only once durable.
    ///
    /// Panics if the writes break the core's promises (entries that do not continue the
    /// log, a term that goes back, a truncation of committed entries): that is a bug.
    pub fn persist(&mut self, writes: &[Write]) -> Result<(), StorageError> {
        self.check_not_poisoned()?;
        let result = self.persist_batch(writes);
        self.poisoned = result.is_err();
        result
    }

    /// Records the commit index in `metadata.json`, a hint for restart. The write is lazy:
    /// it happens when the previous metadata write is at least 100 ms old, or with the next
    /// hard-state change; calling again with the same index flushes a pending one. Fails
    /// if `commit_index` lies beyond the durable log.
    pub fn record_commit_index(&mut self, commit_index: Index) -> Result<(), StorageError> {
        self.check_not_poisoned()?;
        if commit_index > self.log.last_index() {
            return Err(StorageError::CommitBeyondLog {
                path: self.log.path().to_path_buf(),
                commit_index,
                last_index: self.log.last_index(),
            });
        }
        self.commit_index = self.commit_index.max(commit_index);
        if self.last_metadata_write.elapsed() < COMMIT_HINT_INTERVAL {
            return Ok(());
        }
        self.flush_commit_index()
    }

    /// Writes a pending commit index now, e.g. at a clean shutdown.
    pub fn flush_commit_index(&mut self) -> Result<(), StorageError> {
        self.check_not_poisoned()?;
        if !self.commit_hint_pending() {
            return Ok(());
        }
        let result = self.write_metadata(self.metadata.hard_state);
        self.poisoned = result.is_err();
        result
    }

    /// Whether a recorded commit index is still waiting to be written to `metadata.json`.
    pub fn commit_hint_pending(&self) -> bool {
        self.commit_index != self.metadata.commit_index
    }

    /// The node's storage directory, `<data_dir>/<node_id>`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last durable log index.
    pub fn last_index(&self) -> Index {
        self.log.last_index()
    }

    fn persist_batch(&mut self, writes: &[Write]) -> Result<(), StorageError> {
        let mut hard_state = self.metadata.hard_state;
        for write in writes {
            if let Some(next) = write.hard_state {
                assert!(
                    next.term >= hard_state.term,
                    "term went back in {:?}",
                    write.id
                );
                hard_state = next;
            }
            if let Some(after) = write.truncate_after {
                assert!(
                    after >= self.commit_index,
                    "{:?} truncates after {after} below the commit index {}",
                    write.id,
                    self.commit_index
                );
                self.log.stage_truncate(after);
            }
            if let Some(last) = write.entries.last() {
                // Hard state goes to disk before the lines, so no line may outrun it.
                assert!(
                    last.term <= hard_state.term,
                    "{:?} outruns the term",
                    write.id
                );
            }
            self.log.stage_append(&write.entries);
        }
        if hard_state != self.metadata.hard_state {
            self.write_metadata(hard_state)?;
        }
        self.log.commit()
    }

    fn write_metadata(&mut self, hard_state: HardState) -> Result<(), StorageError> {
        let next = Metadata {
            hard_state,
            commit_index: self.commit_index,
        };
        metadata::write(&self.dir, &next)?;
        self.metadata = next;
        self.last_metadata_write = Instant::now();
        Ok(())
    }

    fn check_not_poisoned(&self) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned {
                path: self.dir.clone(),
            });
        }
        Ok(())
    }
}

/// Creates `dir` and any missing ancestors, fsyncing the parent of each one created so the
/// new directory entries survive a crash.
fn create_dir_durably(dir: &Path) -> Result<(), StorageError> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|ancestor| !ancestor.as_os_str().is_empty() && !ancestor.exists())
        .collect();
    fs::create_dir_all(dir).map_err(io_error(dir, "creating directory"))?;
    for created in missing.iter().rev() {
        let parent = match created.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        metadata::sync_dir(parent)?;
    }
    Ok(())
}

/// Fails unless the log exists. A fresh directory gets its log before `metadata.json`, so
/// metadata without a log means the log was lost, not never written.
fn require_log(log_path: &Path) -> Result<(), StorageError> {
    let exists = log_path
        .try_exists()
        .map_err(io_error(log_path, "checking for"))?;
    if exists {
        return Ok(());
    }
    Err(StorageError::Inconsistent {
        path: log_path.to_path_buf(),
        problem: "missing, but metadata.json exists; refusing to start with an empty log \
                  in place of a lost one"
            .to_string(),
    })
}

/// The state of a node that never wrote anything, which only an empty log may belong to.
fn fresh_metadata(dir: &Path, log_path: &Path, log_len: u64) -> Result<Metadata, StorageError> {
    if log_len == 0 {
        return Ok(Metadata::default());
    }
    Err(StorageError::Metadata {
        path: dir.join(metadata::FILE_NAME),
        problem: format!(
            "missing, but {} holds {log_len} bytes; refusing to start without the term and \
             vote that go with them",
            log_path.display(),
        ),
    })
}

/// Opens (creating) the log file, takes the directory's exclusive lock and returns the
/// file with its length.
///
/// The lock (held while the file stays open) keeps a second process with the same node
/// id and data directory from interleaving its writes with ours.
fn open_log(path: &Path) -> Result<(File, u64), StorageError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_error(path, "opening"))?;
    file.try_lock().map_err(|error| match error {
        TryLockError::WouldBlock => StorageError::Locked {
            path: path.to_path_buf(),
        },
        TryLockError::Error(source) => io_error(path, "locking")(source),
    })?;
    let len = file
        .metadata()
        .map_err(io_error(path, "reading the length of"))?
        .len();
    Ok((file, len))
}

/// The cross-file checks `RaftCore::new` would otherwise fail with less context.
fn check_consistent(
    dir: &Path,
    log_path: &Path,
    scanned: &recovery::ScannedLog,
    meta: &Metadata,
) -> Result<(), StorageError> {
    let metadata_path = dir.join(metadata::FILE_NAME);
    if let Some(last) = scanned.entries.last() {
        if last.term > meta.hard_state.term {
            return Err(StorageError::Inconsistent {
                path: log_path.to_path_buf(),
                problem: format!(
                    "line {} has term {} but {} records current term {}",
                    last.index.0,
                    last.term.0,
                    metadata_path.display(),
                    meta.hard_state.term.0
                ),
            });
        }
    }
    let last_index = scanned.entries.len() as u64;
    if meta.commit_index.0 > last_index {
        // A committed entry can only be missing if a durable line was damaged, so point
        // at the line where recovery would otherwise have cut.
        let damaged = scanned.torn.as_ref().map_or(String::new(), |torn| {
            let dropped = match torn.dropped_lines {
                0 => String::new(),
                count => format!(", and {} after it would go with it", lines(count)),
            };
            format!(
                "; its {} {} is damaged ({}){dropped}",
                torn.place(),
                torn.line,
                torn.reason
            )
        });
        return Err(StorageError::Inconsistent {
            path: metadata_path,
            problem: format!(
                "commit index {} lies beyond the last entry of {} (index {last_index}){damaged}",
                meta.commit_index.0,
                log_path.display()
            ),
        });
    }
    Ok(())
}

/// The warning for a cut torn write: where, how much, and which complete lines went with it.
fn torn_warning(log_path: &Path, torn: &recovery::TornTail) -> String {
    let behind = if torn.final_line {
        ""
    } else {
        " and everything after it"
    };
    let mut warning = format!(
        "truncated torn {} {} of {}{behind} ({} bytes): {}",
        torn.place(),
        torn.line,
        log_path.display(),
        torn.bytes,
        torn.reason
    );
    let (was, is) = if torn.dropped_lines == 1 {
        ("was", "is")
    } else {
        ("were", "are")
    };
    if torn.dropped_lines > 0 {
        warning.push_str(&format!(
            "; {} after it {was} part of the same unfinished write and {is} dropped too",
            lines(torn.dropped_lines)
        ));
    }
    warning
}

/// "1 complete line", "3 complete lines".
fn lines(count: u64) -> String {
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} complete line{plural}")
}
