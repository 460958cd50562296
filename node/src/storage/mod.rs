//! Durable storage for one node: `<data-dir>/<node-id>/log/` (the log, as segments) and
//! `metadata.json`.
//!
//! The runtime's storage thread owns a [`Storage`]: [`Storage::open`] reads back what is
//! durable at start, [`Storage::persist`] makes the core's `Persist` writes durable (group
//! commit), [`Storage::record_commit_index`] keeps a restart hint,
//! [`Storage::read_entries`] and [`Storage::fetch`] read the log back from disk, and
//! [`Storage::trim_before`] drops old committed segments.
//!
//! ## Files
//! - `log/<first-index>.jsonl`: the segments, the first index zero-padded to 20 digits; one
//!   entry per line, `{"crc":"574e94ba","index":7,"term":2,"command":"set x=1"}` or
//!   `{"crc":"35927822","index":1,"term":1,"noop":true}` (see `line.rs`). Each sealed
//!   segment has `log/<first-index>.idx` beside it, its sparse offset index (see
//!   `segment.rs`); the last segment is the open one (see `log_dir.rs`).
//! - `metadata.json`: `{"current_term":3,"voted_for":2,"commit_index":17,"first_index":1,
//!   "prev_term":0}`, replaced atomically; see `metadata.rs`. `first_index` is where the
//!   log starts (entries before it were trimmed, or replaced by an install) and `prev_term`
//!   the term of the entry before it, the boundary.
//! - `snapshot.bin`: the data of the last install and the entry it ends at; see
//!   `snapshot.rs`.
//! - `log.jsonl`, the one log file of the layout before segments, is moved into `log/` at
//!   the first start; see `old_format.rs`.
//!
//! ## Why a crash never loses what was reported durable, nor invents anything
//! - `persist` returns only after fsync; the runtime reports `Persisted` only after that.
//! - Hard state goes first: `metadata.json` is replaced (temp file, fsync, rename, fsync of
//!   the directory) before any line of the same batch is written. So a log line never
//!   reaches disk before the term it carries, and a vote is durable before anything that
//!   followed it. Writing the batch's *last* hard state at once is safe: terms only grow,
//!   and a crash mid-batch loses only unacknowledged work.
//! - A truncation is made durable before new lines are written, so old and new lines can
//!   never interleave: within the open segment it cuts the file at the recorded byte offset
//!   of the first dropped line and fsyncs; reaching into sealed segments, it removes whole
//!   segments from the newest on, so a crash leaves a prefix of the old log (`log_dir.rs`).
//! - Appends go to the open segment only, one direct, synchronous write per batch
//!   (`O_DIRECT | O_DSYNC`, rewriting the last partial block with its durable bytes
//!   unchanged; see `direct.rs`), or, where the filesystem refuses that, one `pwrite` after
//!   the last line then one `fdatasync`; the next batch is written only after that
//!   returned. A batch never spans two segments. The file runs on past its lines into
//!   zeros written ahead of time (so that most appends do not change its size, which would
//!   cost an inode write; see `log_file.rs`), trimmed when the log is closed or the
//!   segment sealed. So at most one batch is ever unacknowledged, and it is the last thing
//!   in the open segment. A crash during it leaves each 512-byte sector of it written or
//!   still zero, in any mix: the disk need not write the sectors of one write in order.
//!   Recovery cuts at the first damaged line when nothing follows it (a last line without
//!   a newline, with a bad checksum, or zeros) or when it holds zero-filled sectors (our
//!   encoder never writes a zero byte, so they are sectors that write never reached); in
//!   the second case the lines behind it, parts of the same unfinished batch, go too.
//!   Either way nothing acknowledged is cut, and the warning says what was (cutting zeros
//!   only, which every crash leaves, is a note instead). Damage without zero-filled sectors
//!   before other lines, or a bad sequence in checksummed lines, fails `open` with the
//!   file and line. See `recovery.rs` for the exact rule and what it assumes of the disk.
//! - Sealing makes a segment immutable: zeros cut and fsynced, then its index written
//!   durably, then the next segment created. Damage to a sealed segment, or a missing one,
//!   is never a torn write, and fails `open` naming the file.
//! - A fresh directory gets `log/` with an empty first segment, then `metadata.json`. So
//!   a missing `metadata.json` next to a non-empty log, or a missing log next to
//!   `metadata.json`, means damage, and is reported rather than treated as a fresh node.
//! - The commit index in metadata is never ahead of the durable log, and truncations below
//!   it are refused, so recovery can insist `commit_index <= last index`. That is also the
//!   safety net under the cut: a cut that would drop a committed entry (media damage that
//!   looks like a tear) fails `open` instead.
//! - A trim replaces `metadata.json` with the new first index (that of the first segment
//!   kept) first, then removes the segments before it, then fsyncs the directory. A crash
//!   before the metadata leaves the old log whole; after it, the segments not yet removed
//!   all end before the new first index (their successors start at or before it), so
//!   recovery removes them by their names alone, with a note. Only committed entries go:
//!   the trim point may not pass the commit index, which the same metadata records.
//! - An install stages its data as `snapshot.bin.tmp` (fsynced, and the directory), then
//!   replaces `metadata.json` with the boundary (first index, prev term, and the commit
//!   index at the boundary): the commit point. Then it removes every segment, creates the
//!   empty open segment `<last + 1>.jsonl` and fsyncs the directory, and last renames the
//!   staged data over `snapshot.bin`. The staged file is the marker that an install is
//!   under way: at start, one that names the boundary `metadata.json` names is finished
//!   (every segment removed, the empty one created, the data renamed), and any other goes.
//!   So a crash before the commit point recovers the old log; after it, the new, empty
//!   one; never old segments behind the new boundary. The write's entries are appended
//!   only after all that, like any other, so none is acknowledged before the install is
//!   complete; the old log's entries were given up by the install itself, which the core
//!   asks for only after `last` is committed.
//! - Any failed call poisons the handle: after a failed fsync the kernel may have dropped
//!   the dirty pages, so retrying could report success for lost data. The node must stop.
//!   The same holds for a disk that fills up while sealing: the batch that needed the new
//!   segment was not written, nothing acknowledged is lost, and the node stops with the
//!   error naming the file it could not write.

mod direct;
mod error;
mod line;
mod log_dir;
mod log_file;
mod memberships;
mod metadata;
mod old_format;
mod reader;
mod recovery;
mod segment;
mod sessions;
mod snapshot;

pub use error::{LineProblem, StorageError};
pub(crate) use metadata::replace_durably;
pub use reader::{Cursor, LogReader, ReadError, ReadLimits, StoredEntry, StoredPayload};

use error::io_error;
use log_dir::SegmentedLog;
use metadata::Metadata;
use recovery::Start;
use replog_core::{
    Entry, EntryId, FetchRequest, Fetched, HardState, Index, Install, MembershipCheckpoint,
    MembershipHistory, NodeId, Recovered, SessionsCheckpoint, Term, Write,
};
use replog_driver::apply::{self, WriteTarget};
use replog_driver::catch_up::{self, Answer, CatchUpSource, ServeError};
use std::fs::{self, File, TryLockError};
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

/// The default for [`StorageOptions::segment_bytes`].
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// The smallest segment size accepted: below one block every batch would seal a segment.
pub const MIN_SEGMENT_BYTES: u64 = 4096;

/// How a [`Storage`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageOptions {
    pub append_mode: AppendMode,
    /// A segment is sealed when the next batch would take it past this many bytes (a
    /// single larger batch makes a larger segment). At least [`MIN_SEGMENT_BYTES`].
    pub segment_bytes: u64,
}

impl Default for StorageOptions {
    fn default() -> StorageOptions {
        StorageOptions {
            append_mode: AppendMode::Direct,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// What happened while reading the files back, for the node's log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Repairs made, e.g. "truncated torn final line 57 of data/1/log/000...001.jsonl (23
    /// bytes): ...", or "truncated torn line 57 of ... and everything after it (1456 bytes):
    /// ...; 3 complete lines after it were part of the same unfinished write and are
    /// dropped too", or a sealed segment's index rebuilt.
    pub warnings: Vec<String>,
    /// Routine clean-up that lost no byte of any entry, e.g. "cut 8388421 bytes of unused
    /// preallocated space (zeros) after the last line of data/1/log/000...001.jsonl": what
    /// every crash or kill leaves; or the conversion of an old `log.jsonl`. For the node's
    /// log at info level, not as a warning.
    pub notes: Vec<String>,
}

/// What [`Storage::trim_before`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrimOutcome {
    /// The log's first index now (unchanged if nothing could go).
    pub first_index: Index,
    /// How many segment files were removed (each with its index file).
    pub segments_removed: usize,
    /// The bytes of the segment files removed.
    pub bytes_removed: u64,
}

/// The open storage of one node.
pub struct Storage {
    dir: PathBuf,
    /// The node directory, open and exclusively locked while this handle lives.
    _lock: File,
    log: SegmentedLog,
    /// Invariant: exactly what `metadata.json` holds on disk.
    metadata: Metadata,
    /// Invariant: `metadata.commit_index <= commit_index <= log.last_index()` between calls.
    /// The newest commit index the runtime reported; written lazily.
    commit_index: Index,
    /// What the last install put before the log. Invariant: ends before `first_index`.
    snapshot: Option<Install>,
    /// The newest durable session checkpoint (`sessions.rs`); `None` until the first.
    /// Invariant: `sessions.through >= first_index - 1`: trims wait for it.
    sessions: Option<SessionsCheckpoint>,
    /// The applied configurations (`memberships.rs`): exactly what `membership.json` holds.
    memberships: MembershipHistory,
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
        let options = StorageOptions {
            append_mode: mode,
            ..StorageOptions::default()
        };
        Storage::open_with_options(data_dir, node_id, options)
    }

    /// [`Storage::open`], with every option.
    pub fn open_with_options(
        data_dir: &Path,
        node_id: NodeId,
        options: StorageOptions,
    ) -> Result<(Storage, Recovered, RecoveryReport), StorageError> {
        Storage::open_dir(&data_dir.join(node_id.0.to_string()), options)
    }

    /// [`Storage::open_with_options`] for the node directory `dir` itself (a named node's
    /// `<data_dir>/<name>/`).
    pub fn open_dir(
        dir: &Path,
        options: StorageOptions,
    ) -> Result<(Storage, Recovered, RecoveryReport), StorageError> {
        if options.segment_bytes < MIN_SEGMENT_BYTES {
            return Err(StorageError::BadOption {
                problem: format!(
                    "segment size {} bytes is below the minimum of {MIN_SEGMENT_BYTES}",
                    options.segment_bytes
                ),
            });
        }
        let dir = dir.to_path_buf();
        create_dir_durably(&dir)?;
        let lock = lock_dir(&dir)?;
        let stored = metadata::read(&dir)?;
        let mut report = RecoveryReport::default();
        report
            .notes
            .extend(old_format::convert(&dir, stored.as_ref())?);
        let snapshot = match &stored {
            Some(meta) => {
                let (snapshot, mut notes) = snapshot::recover(&dir, meta)?;
                report.notes.append(&mut notes);
                snapshot
            }
            None => None,
        };
        let start = stored.map_or(Start::LOG, |meta| Start {
            first_index: meta.first_index,
            prev_term: meta.prev_term,
        });
        let direct = options.append_mode == AppendMode::Direct;
        let mut opened =
            SegmentedLog::open(&dir, stored.is_none(), start, options.segment_bytes, direct)?;
        let meta = match stored {
            Some(meta) => meta,
            None => fresh_metadata(&dir, opened.log.open_path(), opened.has_bytes)?,
        };
        let tail = LogTail {
            path: opened.log.open_path(),
            last_index: opened.log.durable_last_index(),
            last_line: (opened.scanned.entries.last())
                .map(|entry| (entry.term, opened.scanned.entries.len() as u64)),
            torn: opened.scanned.torn.as_ref(),
        };
        check_consistent(&dir, &tail, &meta)?;
        if stored.is_none() {
            metadata::write(&dir, &meta)?;
        }
        opened.finish()?;
        report.warnings.append(&mut opened.warnings);
        report.notes.append(&mut opened.notes);
        if let Some(torn) = &opened.scanned.torn {
            report_cut(&mut report, opened.log.open_path(), torn);
        }
        // The core needs only the tail after the recorded commit index (the rest is
        // committed; the core reads it back with `Fetch` when a follower needs it), so
        // restart reads no sealed segment beyond the one entry before the tail.
        let sessions = sessions::read(&dir)?;
        let memberships = memberships::read(&dir)?;
        // The core re-applies the committed entries after the checkpoint to its table.
        let through = SessionsCheckpoint::through_given(sessions.as_ref(), meta.commit_index);
        let from = meta.commit_index.min(through);
        let (prev, entries) = tail_after(&opened, &meta, from)?;
        let recovered = Recovered {
            hard_state: meta.hard_state,
            prev,
            entries,
            commit_index: meta.commit_index,
            sessions: sessions.clone(),
            membership: memberships.newest().cloned(),
        };
        let storage = Storage {
            dir,
            _lock: lock,
            log: opened.log,
            metadata: meta,
            commit_index: meta.commit_index,
            snapshot,
            sessions,
            memberships,
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

    /// Applies every write in order (hard state, install, truncation, entries) and makes
    /// them all durable: at most one metadata replacement, one cut and one durable log
    /// write for the whole batch. Returns only once durable.
    ///
    /// An install replaces the whole log by an empty one that starts after `install.last`
    /// (which becomes the commit index) and keeps `install.data` as [`Storage::snapshot`];
    /// see the module doc for the order of its steps. The last install of a batch wins.
    ///
    /// Panics if the writes break the core's promises (entries that do not continue the
    /// log, a term that goes back, a truncation of committed entries, an install before
    /// the commit index): that is a bug.
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
        if commit_index > self.log.durable_last_index() {
            return Err(StorageError::CommitBeyondLog {
                path: self.log.open_path().to_path_buf(),
                commit_index,
                last_index: self.log.durable_last_index(),
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
        self.log.durable_last_index()
    }

    /// How many segment files the log has, the open one included.
    pub fn segment_count(&self) -> usize {
        self.log.segment_count()
    }

    /// The bytes of the log's segment files on disk (the open one's preallocated zeros
    /// included; their small index files and `snapshot.bin` not).
    pub fn log_bytes(&self) -> u64 {
        self.log.bytes()
    }

    /// For `--retain-bytes`: the trim point that would leave at most `max_bytes` of
    /// segments (whole segments; the open one always stays), or `None` if they fit.
    pub fn retain_point(&self, max_bytes: u64) -> Option<Index> {
        self.log.retain_point(max_bytes)
    }

    /// The log's first index (entries before it were trimmed, or replaced by an install).
    pub fn first_index(&self) -> Index {
        self.metadata.first_index
    }

    /// The entry before the first index: `EntryId::ZERO` for a log that starts at 1.
    pub fn boundary(&self) -> EntryId {
        EntryId {
            index: self.metadata.first_index.prev(),
            term: self.metadata.prev_term,
        }
    }

    /// What the last install put before the log, if there was one: its last entry and
    /// data. Trims since may have moved the first index further on.
    pub fn snapshot(&self) -> Option<&Install> {
        self.snapshot.as_ref()
    }

    /// Serves a core's `Fetch` with the catch-up code the simulator runs too
    /// ([`replog_driver::catch_up`]): durable entries from `request.from`, within its
    /// limits, and the id of the entry before them (the boundary when `from` is the first
    /// index); or, `from` before the first index, the boundary and the session table an
    /// install carries. Fails if a read does, or `from` lies beyond the log.
    pub fn serve_fetch(&self, request: &FetchRequest) -> Result<Answer, StorageError> {
        catch_up::serve(self, request).map_err(|error| match error {
            ServeError::Read(error) => error,
            ServeError::OutsideLog { from, last_index } => StorageError::OutsideLog {
                path: self.dir.clone(),
                from,
                to: from,
                first_index: self.first_index(),
                last_index,
            },
        })
    }

    /// [`Storage::serve_fetch`] for the entries only: `from` before the first index is
    /// [`StorageError::Trimmed`] (those entries are gone, and the peer needs an install).
    pub fn fetch(&self, request: &FetchRequest) -> Result<Fetched, StorageError> {
        match self.serve_fetch(request)? {
            Answer::Fetched(fetched) => Ok(fetched),
            Answer::Trimmed(trimmed) => Err(StorageError::Trimmed {
                path: self.dir.clone(),
                from: request.from,
                first_index: trimmed.boundary.index.next(),
                prev_term: trimmed.boundary.term,
            }),
        }
    }

    /// The durable entries `from..=to` (empty if `from > to`), read from disk: only the
    /// segments the range touches, each from the sparse-index point nearest below `from`.
    /// Fails if the range reaches outside the log ([`StorageError::Trimmed`] before the
    /// first index), or a line read is damaged.
    pub fn read_entries(&self, from: Index, to: Index) -> Result<Vec<Entry>, StorageError> {
        self.log.read_entries(from, to)
    }

    fn persist_batch(&mut self, writes: &[Write]) -> Result<(), StorageError> {
        let mut batch = Batch {
            log: &mut self.log,
            hard_state: self.metadata.hard_state,
            commit_index: self.commit_index,
            install: None,
            checkpoint: None,
            stored_sessions: self.sessions.as_ref().map(|stored| stored.through),
            memberships: None,
            stored_memberships: &self.memberships,
        };
        for write in writes {
            if let Err(broken) = apply::apply(&mut batch, write, apply::ALL_PARTS) {
                panic!("{:?} breaks the core's promise: {broken}", write.id);
            }
        }
        let Batch {
            hard_state,
            commit_index,
            install,
            checkpoint,
            memberships,
            ..
        } = batch;
        self.commit_index = commit_index;
        // Before an install: its log may start after the stored checkpoint's `through`.
        // Otherwise the checkpoint covers only entries an earlier batch made durable.
        if let Some(checkpoint) = checkpoint {
            sessions::write(&self.dir, checkpoint)?;
            self.sessions = Some(checkpoint.clone());
        }
        // Likewise for the configurations: an install's replaces the history.
        if let Some(mut history) = memberships {
            history.trimmed(self.first_index());
            memberships::write(&self.dir, &history)?;
            self.memberships = history;
        }
        if let Some(install) = install {
            self.install(hard_state, install)?;
        } else if hard_state != self.metadata.hard_state {
            self.write_metadata(hard_state)?;
        }
        self.log.commit()
    }

    /// The configuration in force at the log's boundary, which a fetch answered `Trimmed`
    /// carries (`None`: the bootstrap one).
    pub fn membership_at_boundary(&self) -> Option<MembershipCheckpoint> {
        self.memberships.at(self.boundary().index).cloned()
    }

    /// The steps of an install before the batch's appends; see the module doc for why in
    /// this order.
    fn install(&mut self, hard_state: HardState, install: &Install) -> Result<(), StorageError> {
        snapshot::stage(&self.dir, install)?;
        self.replace_metadata(Metadata {
            hard_state,
            commit_index: install.last.index,
            first_index: install.last.index.next(),
            prev_term: install.last.term,
        })?;
        self.log.apply_install()?;
        snapshot::promote(&self.dir)?;
        self.snapshot = Some(install.clone());
        Ok(())
    }

    fn write_metadata(&mut self, hard_state: HardState) -> Result<(), StorageError> {
        self.replace_metadata(Metadata {
            hard_state,
            commit_index: self.commit_index,
            ..self.metadata
        })
    }

    fn replace_metadata(&mut self, next: Metadata) -> Result<(), StorageError> {
        metadata::write(&self.dir, &next)?;
        self.metadata = next;
        self.last_metadata_write = Instant::now();
        Ok(())
    }

    /// Drops the oldest segments whose entries all lie before `before`, never the open
    /// one, and returns the log's first index then and what went. Fails if `before` lies
    /// beyond the recorded commit index plus one (only committed entries may go), without
    /// changing anything. Everything from `before` on stays, and so may some entries
    /// before it: segments go whole.
    ///
    /// `metadata.json` names the new first index before any file goes; see the module doc.
    pub fn trim_before(&mut self, mut before: Index) -> Result<TrimOutcome, StorageError> {
        self.check_not_poisoned()?;
        if before > self.commit_index.next() {
            return Err(StorageError::TrimBeyondCommit {
                path: self.dir.clone(),
                before,
                commit_index: self.commit_index,
            });
        }
        // A restart replays the session table from its checkpoint: keep what follows it.
        let through = SessionsCheckpoint::through_given(self.sessions.as_ref(), self.commit_index);
        before = before.min(through.next());
        let Some((count, start)) = self.log.trim_point(before) else {
            return Ok(TrimOutcome {
                first_index: self.first_index(),
                segments_removed: 0,
                bytes_removed: 0,
            });
        };
        let result = self.trim(count, start);
        self.poisoned = result.is_err();
        result
    }

    fn trim(&mut self, count: usize, start: Start) -> Result<TrimOutcome, StorageError> {
        self.replace_metadata(Metadata {
            commit_index: self.commit_index,
            first_index: start.first_index,
            prev_term: start.prev_term,
            ..self.metadata
        })?;
        let bytes_removed = self.log.drop_oldest(count, start)?;
        Ok(TrimOutcome {
            first_index: start.first_index,
            segments_removed: count,
            bytes_removed,
        })
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

/// One group commit being staged: the applier's target on the node. Hard state, the
/// install and the session checkpoint are kept until [`Storage::persist_batch`] writes
/// them (the batch's last hard state, its last install, its newest checkpoint); the log's
/// truncations and appends are staged in the segments.
struct Batch<'s, 'w> {
    log: &'s mut SegmentedLog,
    hard_state: HardState,
    commit_index: Index,
    install: Option<&'w Install>,
    checkpoint: Option<&'w SessionsCheckpoint>,
    /// The stored checkpoint's `through`, if there is one.
    stored_sessions: Option<Index>,
    /// The configuration history, copied from the stored one when the batch changes it.
    memberships: Option<MembershipHistory>,
    stored_memberships: &'s MembershipHistory,
}

impl<'w> WriteTarget<'w> for Batch<'_, 'w> {
    fn hard_state(&self) -> HardState {
        self.hard_state
    }

    fn commit_index(&self) -> Index {
        self.commit_index
    }

    fn last_index(&self) -> Index {
        self.log.staged_last_index()
    }

    fn sessions_through(&self) -> Option<Index> {
        (self.checkpoint.map(|staged| staged.through)).or(self.stored_sessions)
    }

    fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    fn install(&mut self, install: &'w Install) {
        self.commit_index = install.last.index;
        self.log.stage_install(install.last);
        self.install = Some(install);
    }

    fn truncate_after(&mut self, after: Index) {
        self.log.stage_truncate(after);
    }

    fn append(&mut self, entries: &'w [Entry]) {
        self.log.stage_append(entries);
    }

    fn keep_sessions(&mut self, checkpoint: &'w SessionsCheckpoint) {
        self.checkpoint = Some(checkpoint);
    }

    fn memberships(&mut self) -> &mut MembershipHistory {
        let stored = self.stored_memberships;
        self.memberships.get_or_insert_with(|| stored.clone())
    }
}

/// The segments as a source of catch-up reads.
impl CatchUpSource for Storage {
    type Error = StorageError;

    fn boundary(&self) -> EntryId {
        Storage::boundary(self)
    }

    fn last_index(&self) -> Index {
        Storage::last_index(self)
    }

    fn sessions(&self) -> Option<&SessionsCheckpoint> {
        self.sessions.as_ref()
    }

    fn memberships(&self) -> &MembershipHistory {
        &self.memberships
    }

    fn read(&self, from: Index, to: Index) -> Result<Vec<Entry>, StorageError> {
        self.read_entries(from, to)
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

/// The state of a node that never wrote anything, which only an empty log may belong to.
pub(crate) fn fresh_metadata(
    dir: &Path,
    log_path: &Path,
    has_bytes: bool,
) -> Result<Metadata, StorageError> {
    if !has_bytes {
        return Ok(Metadata::default());
    }
    Err(StorageError::Metadata {
        path: dir.join(metadata::FILE_NAME),
        problem: format!(
            "missing, but the log ({} and any segments before it) holds entries; refusing \
             to start without the term and vote that go with them",
            log_path.display(),
        ),
    })
}

/// Takes the node directory's exclusive lock, held while the returned handle stays open.
/// It keeps a second process with the same node id and data directory from interleaving
/// its writes with ours.
fn lock_dir(dir: &Path) -> Result<File, StorageError> {
    let handle = File::open(dir).map_err(io_error(dir, "opening"))?;
    handle.try_lock().map_err(|error| match error {
        TryLockError::WouldBlock => StorageError::Locked {
            path: dir.to_path_buf(),
        },
        TryLockError::Error(source) => io_error(dir, "locking")(source),
    })?;
    Ok(handle)
}

/// The end of a log as recovery found it, for the checks against `metadata.json`.
pub(crate) struct LogTail<'a> {
    /// The file holding the last lines.
    pub path: &'a Path,
    pub last_index: Index,
    /// The last entry's term and line number in that file, if it holds any entry.
    pub last_line: Option<(Term, u64)>,
    pub torn: Option<&'a recovery::TornTail>,
}

/// The cross-file checks `RaftCore::new` would otherwise fail with less context.
pub(crate) fn check_consistent(
    dir: &Path,
    tail: &LogTail,
    meta: &Metadata,
) -> Result<(), StorageError> {
    let metadata_path = dir.join(metadata::FILE_NAME);
    if let Some((term, line)) = tail
        .last_line
        .filter(|&(term, _)| term > meta.hard_state.term)
    {
        return Err(StorageError::Inconsistent {
            path: tail.path.to_path_buf(),
            problem: format!(
                "line {line} has term {} (index {}) but {} records current term {}",
                term.0,
                tail.last_index.0,
                metadata_path.display(),
                meta.hard_state.term.0
            ),
        });
    }
    if meta.commit_index < meta.first_index.prev() {
        return Err(StorageError::Inconsistent {
            path: metadata_path,
            problem: format!(
                "commit index {} lies before the log's first index {}; only committed \
                 entries are ever trimmed",
                meta.commit_index.0, meta.first_index.0
            ),
        });
    }
    let last_index = tail.last_index.0;
    if meta.commit_index.0 > last_index {
        // A committed entry can only be missing if a durable line was damaged, so point
        // at the line where recovery would otherwise have cut.
        let damaged = tail.torn.map_or(String::new(), |torn| {
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
                tail.path.display()
            ),
        });
    }
    Ok(())
}

/// Reports a cut behind the open segment's lines: a note for zeros only, else a warning.
fn report_cut(report: &mut RecoveryReport, log_path: &Path, torn: &recovery::TornTail) {
    if torn.zeros_only {
        report.notes.push(format!(
            "cut {} bytes of unused preallocated space (zeros) after the last line of {}",
            torn.bytes,
            log_path.display()
        ));
    } else {
        report.warnings.push(torn_warning(log_path, torn));
    }
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

/// The log's tail after the recorded commit index, and the id of the entry just before
/// it, for `Recovered`. The open segment's entries are in memory from its scan; only what
/// lies before it is read, through the range read.
fn tail_after(
    opened: &log_dir::Opened,
    meta: &Metadata,
    commit: Index,
) -> Result<(EntryId, Vec<Entry>), StorageError> {
    let log = &opened.log;
    let open_first = log.open_first_index();
    let open_entries = &opened.scanned.entries;
    let prev = if commit < meta.first_index {
        EntryId {
            index: meta.first_index.prev(),
            term: meta.prev_term,
        }
    } else if commit >= open_first {
        open_entries[open_first.count_to(commit) as usize].id()
    } else {
        let read = log.read_entries(commit, commit)?;
        read.first().map(Entry::id).unwrap_or(EntryId::ZERO)
    };
    let mut entries = if commit.next() < open_first {
        log.read_entries(commit.next(), open_first.prev())?
    } else {
        Vec::new()
    };
    let skip = open_first.count_to(commit.next()) as usize;
    entries.extend_from_slice(&open_entries[skip.min(open_entries.len())..]);
    Ok((prev, entries))
}
