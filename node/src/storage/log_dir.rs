//! The log as a directory of segments: staging a batch, sealing, truncating across
//! segments, range reads, and reading the directory back at start.
//!
//! `log/` holds segments `<first-index>.jsonl` (see `segment.rs`) forming a chain: each
//! starts at the index after the previous one's last. Every segment but the last is
//! sealed: never written again, with its sparse index beside it. The last is the open
//! segment, the only one appended to ([`LogFile`]), with zeros preallocated behind its lines.
//!
//! ## Sealing
//! A batch goes whole into the open segment, so that it stays one durable write: when the
//! open segment holds lines and the batch would take it past `segment_bytes`, it is sealed
//! first (its zeros cut and fsynced, its index written durably), then the next segment is
//! created empty (and the directory fsynced), and the batch goes there. A batch larger than
//! `segment_bytes` makes a segment larger than that. A crash at any point leaves either the
//! old open segment last (with or without its new index, which is ignored and removed: the
//! last segment is always scanned as the open one) or the new, empty segment last; either
//! way the log is exactly what it was.
//!
//! ## Truncation
//! Cutting the uncommitted suffix within the open segment is today's durable `ftruncate`.
//! A cut that reaches into a sealed segment removes every later segment, newest first
//! (fsyncing the directory after each), then that segment's index, and then truncates it;
//! it is the open segment from then on. A crash between any two steps leaves a chain that
//! ends early: a prefix of the old log, never a hole, since segments go from the end. The
//! batch is acknowledged only after all of it is durable.
//!
//! ## Retention
//! The log starts at `metadata.json`'s first index, which need not be 1. A trim removes
//! the oldest sealed segments whose entries all lie before its point, never the open one,
//! after the metadata names the first kept segment's first index (see `mod.rs`). An
//! install removes every segment and starts again with an empty open segment after its
//! last entry (`replace_all`). A first segment may also straddle the first index (start
//! before it, reach at least the entry before it): its entries before the first index are
//! not served, and recovery checks that it holds the boundary entry in the term the
//! metadata names.
//!
//! ## Recovery
//! Removes the segments that end before the log's first index (a crash during a trim left
//! them), then reads each sealed segment's index (rebuilding it by a scan, with a warning, if it is
//! missing or damaged), checks that the names form a chain and that each sealed segment
//! ends with the intact line its index names, and scans only the open segment with the
//! tear rules of `recovery.rs`. So start-up reads a bounded amount of each sealed segment,
//! not the whole log. A missing or damaged sealed segment refuses the start, naming the
//! file: sealed segments are never written, so their damage is never a torn write.
//! Deleting the open segment itself cannot be told apart from a crash just after the
//! previous one's sealing; the commit index in `metadata.json` catches it if it held
//! committed entries (see `check_consistent` in `mod.rs`).

use super::direct::DirectAppender;
use super::error::{io_error, StorageError};
use super::line::encode_entry;
use super::log_file::LogFile;
use super::metadata::sync_dir;
use super::recovery::{self, ScannedLog, Start};
use super::segment::{self, damaged, Name, SparseIndex};
use replog_core::{Entry, EntryId, Index, Term};
use replog_driver::segments;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// A staging buffer that grew beyond this is shrunk after its batch, so one huge batch
/// does not pin its memory for the node's lifetime.
const STAGED_CAPACITY_KEEP_BYTES: usize = 4 << 20;

/// A sealed segment: its file and its index, held in memory.
struct Sealed {
    path: PathBuf,
    index: SparseIndex,
}

/// The writes of one batch, encoded, waiting for [`SegmentedLog::commit`].
#[derive(Default)]
struct Staged {
    /// The last entry of an install in this batch: the log is replaced by an empty one
    /// after it before anything staged is written.
    install: Option<EntryId>,
    /// Invariant: at most the durable last index, or the install's last index. Durable
    /// entries above it are cut at commit; between batches it is the durable last index.
    keep: Index,
    /// Encoded lines of the entries after `keep`. Reused across batches.
    bytes: Vec<u8>,
    /// Each staged line's start in `bytes`, and its entry's term.
    lines: Vec<(usize, Term)>,
}

impl Staged {
    fn last_index(&self) -> Index {
        self.keep.plus(self.lines.len() as u64)
    }

    fn reset(&mut self, keep: Index) {
        self.install = None;
        self.keep = keep;
        self.bytes.clear();
        self.lines.clear();
        if self.bytes.capacity() > STAGED_CAPACITY_KEEP_BYTES {
            self.bytes.shrink_to(STAGED_CAPACITY_KEEP_BYTES);
        }
    }
}

pub(crate) struct SegmentedLog {
    dir: PathBuf,
    /// Where the log starts: `metadata.json`'s `first_index` and `prev_term`. Entries
    /// before it are not served, even where the first segment still holds them.
    start: Start,
    /// Where the first segment starts, and the term its lines are checked against:
    /// `start` itself, or an earlier index (and term 0, the term before it being unknown)
    /// when the first segment straddles `start`.
    /// Invariant: `base.first_index <= start.first_index`.
    base: Start,
    /// Invariant: a chain from `base`: each starts at the index after the previous one's
    /// last, and the open segment after the last of them.
    sealed: Vec<Sealed>,
    open: LogFile,
    segment_bytes: u64,
    staged: Staged,
}

/// A log directory read back, before its torn tail (if any) is cut.
pub(crate) struct Opened {
    pub log: SegmentedLog,
    /// The open segment's checked lines, and what a crash left behind them.
    pub scanned: ScannedLog,
    /// Whether any segment holds a byte (a node that never wrote has none).
    pub has_bytes: bool,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
    /// Files a crash left that go once the start is accepted.
    leftovers: Vec<PathBuf>,
}

impl SegmentedLog {
    /// Reads `<node_dir>/log/` back as a log that starts at `start` (from
    /// `metadata.json`), creating it with an empty first segment if absent and `create` is
    /// set. Changes nothing on disk but rebuilt indices.
    pub(crate) fn open(
        node_dir: &Path,
        create: bool,
        start: Start,
        segment_bytes: u64,
        direct: bool,
    ) -> Result<Opened, StorageError> {
        let dir = node_dir.join(segment::DIR_NAME);
        let listed = list(&dir)?;
        if listed.segments.is_empty() {
            if !create {
                return Err(StorageError::Inconsistent {
                    path: segment::segment_path(&dir, start.first_index),
                    problem: "missing (no segment in the log directory), but metadata.json \
                              exists; refusing to start with an empty log in place of a lost one"
                        .to_string(),
                });
            }
            create_first_segment(node_dir, &dir)?;
            return SegmentedLog::open(node_dir, false, start, segment_bytes, direct);
        }
        let mut opened = read_chain(&dir, &listed, start)?;
        let (&open_first, open_path) = listed.segments.last_key_value().expect("not empty");
        let prev_term = opened
            .sealed
            .last()
            .map_or(opened.base.prev_term, |last| last.index.last_term);
        let open_start = Start {
            first_index: open_first,
            prev_term,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(open_path)
            .map_err(io_error(open_path, "opening"))?;
        let len = file_len(&file, open_path)?;
        let mut scanned = recovery::scan(
            open_path,
            BufReader::with_capacity(1 << 16, &file),
            open_start,
        )?;
        let direct = match direct {
            true => DirectAppender::open(open_path)
                .map_err(io_error(open_path, "opening for direct writes"))?,
            false => None,
        };
        let lines = (
            &scanned.entries[..],
            std::mem::take(&mut scanned.offsets),
            scanned.valid_len,
        );
        let open = LogFile::new(open_path, file, open_start, lines, segment_bytes, direct);
        let has_bytes = len > 0 || !opened.sealed.is_empty();
        if let Some(stale) = listed.indices.get(&open_first) {
            opened.leftovers.push(stale.clone());
            opened.notes.push(format!(
                "removed {}: the open segment's index, left by a crash while sealing it",
                stale.display()
            ));
        }
        let log = SegmentedLog {
            dir,
            start,
            base: opened.base,
            sealed: opened.sealed,
            staged: Staged {
                keep: open.last_index(),
                ..Staged::default()
            },
            open,
            segment_bytes,
        };
        log.check_boundary()?;
        Ok(Opened {
            log,
            scanned,
            has_bytes,
            warnings: opened.warnings,
            notes: opened.notes,
            leftovers: opened.leftovers,
        })
    }

    /// The open segment's path, for messages.
    pub(crate) fn open_path(&self) -> &Path {
        self.open.path()
    }

    /// The first index of the open segment.
    pub(crate) fn open_first_index(&self) -> Index {
        self.open.first_index()
    }

    /// The log's first index: `metadata.json`'s, not necessarily the first segment's.
    pub(crate) fn first_index(&self) -> Index {
        self.start.first_index
    }

    /// The bytes of the segment files: the sealed ones' lines, and the open one with its
    /// preallocated zeros.
    pub(crate) fn bytes(&self) -> u64 {
        let sealed: u64 = self.sealed.iter().map(|sealed| sealed.index.bytes).sum();
        sealed + self.open.file_len()
    }

    /// When the first segment starts before the log's first index (left so by a crash
    /// during an install that did not yet remove it, or by a trim that kept it), checks
    /// that it holds the entry before that index in the term `metadata.json` names:
    /// otherwise the segments and the metadata describe different logs.
    fn check_boundary(&self) -> Result<(), StorageError> {
        if self.base.first_index == self.start.first_index {
            return Ok(());
        }
        let boundary = self.start.first_index.prev();
        let metadata = super::metadata::FILE_NAME;
        if boundary > self.durable_last_index() {
            return Err(StorageError::Inconsistent {
                path: self.open.path().to_path_buf(),
                problem: format!(
                    "the log ends at index {}, before index {} where {metadata} says it \
                     starts",
                    self.durable_last_index().0,
                    self.start.first_index.0
                ),
            });
        }
        let read = self.read_raw(boundary, boundary)?;
        let term = read.first().map_or(Term(0), |entry| entry.term);
        if term != self.start.prev_term {
            return Err(StorageError::Inconsistent {
                path: self.dir.clone(),
                problem: format!(
                    "entry {} has term {}, but {metadata} says the entry before the log's \
                     first index {} has term {}",
                    boundary.0, term.0, self.start.first_index.0, self.start.prev_term.0
                ),
            });
        }
        Ok(())
    }

    /// The last durable index.
    pub(crate) fn durable_last_index(&self) -> Index {
        self.open.last_index()
    }

    /// How many segments the log has, the open one included.
    pub(crate) fn segment_count(&self) -> usize {
        self.sealed.len() + 1
    }

    pub(crate) fn appends_directly(&self) -> bool {
        self.open.appends_directly()
    }

    pub(crate) fn take_fallback_notice(&mut self) -> Option<String> {
        self.open.take_fallback_notice()
    }

    /// The last entry once what is staged is committed.
    pub(crate) fn staged_last_index(&self) -> Index {
        self.staged.last_index()
    }

    /// Drops every entry above `after`, staged or durable; a no-op past the last entry.
    pub(crate) fn stage_truncate(&mut self, after: Index) {
        let staged = &mut self.staged;
        if after >= staged.last_index() {
            return;
        }
        if after >= staged.keep {
            let kept = (after.0 - staged.keep.0) as usize;
            staged.bytes.truncate(staged.lines[kept].0);
            staged.lines.truncate(kept);
        } else {
            staged.keep = after;
            staged.bytes.clear();
            staged.lines.clear();
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
                self.staged.last_index().next(),
                "write does not continue the log"
            );
            self.staged
                .lines
                .push((self.staged.bytes.len(), entry.term));
            encode_entry(entry, &mut self.staged.bytes);
        }
    }

    /// Replaces the whole log, at [`SegmentedLog::apply_install`], by an empty one that
    /// starts after `last`; what was staged before is dropped.
    pub(crate) fn stage_install(&mut self, last: EntryId) {
        self.staged.reset(last.index);
        self.staged.install = Some(last);
    }

    /// Carries out a staged install (see the module doc), before the rest of the batch is
    /// committed. The caller has made the new start durable in `metadata.json` first.
    pub(crate) fn apply_install(&mut self) -> Result<(), StorageError> {
        let Some(last) = self.staged.install.take() else {
            return Ok(());
        };
        let start = Start {
            first_index: last.index.next(),
            prev_term: last.term,
        };
        let path = replace_all(&self.dir, start)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_error(&path, "opening"))?;
        let next = self.open_file(&path, file, start, (&[], Vec::new(), 0))?;
        std::mem::replace(&mut self.open, next).discard();
        self.sealed.clear();
        self.start = start;
        self.base = start;
        Ok(())
    }

    /// How many sealed segments hold only entries before `before`, and where the log
    /// starts without them; `None` if there are none. The open segment always stays.
    pub(crate) fn trim_point(&self, before: Index) -> Option<(usize, Start)> {
        let count = segments::trimmed(&self.sealed, before, |sealed| sealed.index.last_index);
        let last_dropped = &self.sealed[..count].last()?.index;
        Some((
            count,
            Start {
                first_index: last_dropped.last_index.next(),
                prev_term: last_dropped.last_term,
            },
        ))
    }

    /// Where to trim so that the segments kept hold at most `max_bytes` (the open one always
    /// stays, whatever its size): the first index of the oldest sealed segment that still
    /// fits, or `None` when every segment does.
    pub(crate) fn retain_point(&self, max_bytes: u64) -> Option<Index> {
        let mut total = self.open.durable_len();
        let mut keep_from = self.sealed.len();
        for (k, sealed) in self.sealed.iter().enumerate().rev() {
            total += sealed.index.bytes;
            if total > max_bytes {
                break;
            }
            keep_from = k;
        }
        let last_dropped = &self.sealed[..keep_from].last()?.index;
        Some(last_dropped.last_index.next())
    }

    /// Removes the `count` oldest sealed segments and their indices, then fsyncs the
    /// directory; `start` is where the log starts without them, which `metadata.json`
    /// already says. Returns the bytes of the segment files removed.
    pub(crate) fn drop_oldest(&mut self, count: usize, start: Start) -> Result<u64, StorageError> {
        assert!(
            count <= self.sealed.len(),
            "only sealed segments are trimmed"
        );
        self.start = start;
        self.base = start;
        let mut bytes = 0;
        for sealed in self.sealed.drain(..count) {
            segment::remove_if_present(&sealed.path)?;
            segment::remove_if_present(&segment::index_path(&sealed.path))?;
            bytes += sealed.index.bytes;
        }
        sync_dir(&self.dir)?;
        Ok(bytes)
    }

    /// Makes everything staged durable: the cut (if any), then one durable write of every
    /// staged line, into a new segment if the open one is full.
    pub(crate) fn commit(&mut self) -> Result<(), StorageError> {
        debug_assert!(
            self.staged.install.is_none(),
            "an install is applied by Storage once metadata names it, before commit"
        );
        if self.staged.keep < self.open.last_index() {
            self.cut_after(self.staged.keep)?;
        }
        if !self.staged.bytes.is_empty() {
            let len = self.open.durable_len();
            let batch = self.staged.bytes.len() as u64;
            if segments::seals_before(len, batch, self.segment_bytes) {
                self.seal()?;
            }
            self.open.append(&self.staged.bytes, &self.staged.lines)?;
        }
        self.staged.reset(self.open.last_index());
        Ok(())
    }

    /// Seals the open segment and opens the next, empty one (see the module doc).
    fn seal(&mut self) -> Result<(), StorageError> {
        self.open.cut_tail()?;
        let index = SparseIndex::build(
            self.open.first_index(),
            self.open.last_term(),
            self.open.offsets(),
            self.open.durable_len(),
        );
        segment::write_index(self.open.path(), &index)?;
        let start = Start {
            first_index: index.last_index.next(),
            prev_term: index.last_term,
        };
        let path = segment::segment_path(&self.dir, start.first_index);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error(&path, "creating"))?;
        sync_dir(&self.dir)?;
        let next = self.open_file(&path, file, start, (&[], Vec::new(), 0))?;
        let sealed = std::mem::replace(&mut self.open, next);
        self.sealed.push(Sealed {
            path: sealed.path().to_path_buf(),
            index,
        });
        Ok(())
    }

    /// Wraps a segment file as the open one, appending directly if the current one does.
    fn open_file(
        &self,
        path: &Path,
        file: File,
        start: Start,
        lines: (&[Entry], Vec<u64>, u64),
    ) -> Result<LogFile, StorageError> {
        let direct = match self.open.appends_directly() {
            true => {
                DirectAppender::open(path).map_err(io_error(path, "opening for direct writes"))?
            }
            false => None,
        };
        Ok(LogFile::new(
            path,
            file,
            start,
            lines,
            self.segment_bytes,
            direct,
        ))
    }

    /// Cuts every durable entry above `keep` (see the module doc for the order).
    fn cut_after(&mut self, keep: Index) -> Result<(), StorageError> {
        if keep >= self.open.first_index().prev() {
            return self.open.cut_after(keep);
        }
        let holder =
            segments::reopened_by_truncation(&self.sealed, keep, |sealed| sealed.index.first_index);
        segment::remove_if_present(self.open.path())?;
        sync_dir(&self.dir)?;
        while self.sealed.len() > holder + 1 {
            let later = self.sealed.pop().expect("counted");
            segment::remove_if_present(&later.path)?;
            segment::remove_if_present(&segment::index_path(&later.path))?;
            sync_dir(&self.dir)?;
        }
        let reopened = self.sealed.pop().expect("the holder");
        segment::remove_if_present(&segment::index_path(&reopened.path))?;
        sync_dir(&self.dir)?;
        let path = reopened.path;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_error(&path, "opening"))?;
        let start = Start {
            first_index: reopened.index.first_index,
            prev_term: self
                .sealed
                .last()
                .map_or(self.base.prev_term, |last| last.index.last_term),
        };
        let scanned = recovery::scan(&path, BufReader::with_capacity(1 << 16, &file), start)?;
        if scanned.torn.is_some() || scanned.entries.len() as u64 != reopened.index.entries() {
            return Err(damaged(
                &path,
                "sealed segment no longer holds the lines its index named".to_string(),
            ));
        }
        let lines = (&scanned.entries[..], scanned.offsets, scanned.valid_len);
        let next = self.open_file(&path, file, start, lines)?;
        std::mem::replace(&mut self.open, next).discard();
        self.open.cut_after(keep)
    }

    /// The durable entries `from..=to`, read from disk: seeks through the sparse index of
    /// each sealed segment it touches (the open one's offsets are exact) and streams only
    /// those lines. Every line is checked again as it is read. Entries before the log's
    /// first index are [`StorageError::Trimmed`], even where a segment still holds them.
    pub(crate) fn read_entries(&self, from: Index, to: Index) -> Result<Vec<Entry>, StorageError> {
        if from <= to && from < self.start.first_index {
            return Err(StorageError::Trimmed {
                path: self.dir.clone(),
                from,
                first_index: self.start.first_index,
                prev_term: self.start.prev_term,
            });
        }
        self.read_raw(from, to)
    }

    /// [`SegmentedLog::read_entries`] of whatever the segments hold, before the log's
    /// first index too.
    fn read_raw(&self, from: Index, to: Index) -> Result<Vec<Entry>, StorageError> {
        let last = self.durable_last_index();
        if from > to {
            return Ok(Vec::new());
        }
        if from < self.base.first_index || to > last {
            return Err(StorageError::OutsideLog {
                path: self.dir.clone(),
                from,
                to,
                first_index: self.first_index(),
                last_index: last,
            });
        }
        let mut entries = Vec::with_capacity((to.0 - from.0 + 1).min(1 << 16) as usize);
        let mut collect = |entry: Entry| {
            let index = entry.index;
            if index >= from && index <= to {
                entries.push(entry);
            }
            Ok::<bool, StorageError>(index < to)
        };
        let touched = self.sealed.partition_point(|s| s.index.last_index < from);
        for sealed in &self.sealed[touched..] {
            if sealed.index.first_index > to {
                return Ok(entries);
            }
            let (point, offset) = sealed.index.seek(from);
            let file = File::open(&sealed.path).map_err(io_error(&sealed.path, "opening"))?;
            let end = sealed.index.bytes;
            segment::for_each_line(&sealed.path, file, offset, end, point, &mut collect)?;
        }
        let first = from.max(self.open.first_index());
        if let Some(offset) = self.open.offset_of(first) {
            let path = self.open.path();
            let file = File::open(path).map_err(io_error(path, "opening"))?;
            let end = self.open.durable_len();
            segment::for_each_line(path, file, offset, end, first, &mut collect)?;
        }
        Ok(entries)
    }
}

impl Opened {
    /// Once the start is accepted: cuts what a crash left behind the open segment's lines
    /// and removes leftover files.
    pub(crate) fn finish(&mut self) -> Result<(), StorageError> {
        if self.scanned.torn.is_some() {
            self.log.open.cut_tail()?;
        }
        if !self.leftovers.is_empty() {
            for leftover in &self.leftovers {
                segment::remove_if_present(leftover)?;
            }
            sync_dir(&self.log.dir)?;
        }
        Ok(())
    }
}

/// The files of a log directory, by kind.
#[derive(Default)]
struct Listed {
    segments: BTreeMap<Index, PathBuf>,
    indices: BTreeMap<Index, PathBuf>,
    temps: Vec<PathBuf>,
}

fn list(dir: &Path) -> Result<Listed, StorageError> {
    let mut listed = Listed::default();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(listed),
        Err(error) => return Err(io_error(dir, "listing")(error)),
    };
    for entry in entries {
        let entry = entry.map_err(io_error(dir, "listing"))?;
        let path = entry.path();
        match segment::parse_name(&entry.file_name().to_string_lossy()) {
            Name::Segment(first) => {
                listed.segments.insert(first, path);
            }
            Name::Index(first) => {
                listed.indices.insert(first, path);
            }
            Name::Temp => listed.temps.push(path),
            Name::Other => {}
        }
    }
    Ok(listed)
}

/// A fresh log: `log/` and an empty first segment, each made durable in its directory.
fn create_first_segment(node_dir: &Path, dir: &Path) -> Result<(), StorageError> {
    match fs::create_dir(dir) {
        Ok(()) => sync_dir(node_dir)?,
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(io_error(dir, "creating directory")(error)),
    }
    let path = segment::segment_path(dir, Index(1));
    File::create(&path).map_err(io_error(&path, "creating"))?;
    sync_dir(dir)
}

/// Removes every file of the log directory (segments newest first, their indices, temp
/// files) and creates the empty segment at `start`, fsyncing the directory once at the end:
/// an install (see the module doc). Returns the new segment's path.
pub(crate) fn replace_all(dir: &Path, start: Start) -> Result<PathBuf, StorageError> {
    let listed = list(dir)?;
    for path in listed.segments.values().rev() {
        segment::remove_if_present(path)?;
    }
    for path in listed.indices.values().chain(&listed.temps) {
        segment::remove_if_present(path)?;
    }
    let path = segment::segment_path(dir, start.first_index);
    File::create(&path).map_err(io_error(&path, "creating"))?;
    sync_dir(dir)?;
    Ok(path)
}

/// What reading the sealed segments found.
struct Chain {
    /// Where the first segment kept starts (see `SegmentedLog::base`).
    base: Start,
    sealed: Vec<Sealed>,
    warnings: Vec<String>,
    notes: Vec<String>,
    leftovers: Vec<PathBuf>,
}

/// Checks the sealed segments (all but the last) and their chain from the log's `start`;
/// see the module doc. Segments wholly before `start` become leftovers.
fn read_chain(dir: &Path, listed: &Listed, start: Start) -> Result<Chain, StorageError> {
    let all: Vec<(Index, &PathBuf)> = listed.segments.iter().map(|(&i, p)| (i, p)).collect();
    // A segment whose successor starts at or before the log's first index holds only
    // entries before it: a trim writes the new first index before it removes segments.
    let below = all
        .windows(2)
        .take_while(|pair| pair[1].0 <= start.first_index)
        .count();
    let segments = &all[below..];
    let (first, first_path) = segments[0];
    if first > start.first_index {
        let since = match start.first_index {
            Index(1) => String::new(),
            first_index => format!(
                "; {} says the log starts at index {}",
                super::metadata::FILE_NAME,
                first_index.0
            ),
        };
        return Err(damaged(
            &segment::segment_path(dir, start.first_index),
            format!(
                "missing: the log's first segment (the oldest present, {}, starts at index \
                 {}{since})",
                first_path.display(),
                first.0
            ),
        ));
    }
    let base = match first == start.first_index {
        true => start,
        false => Start {
            first_index: first,
            prev_term: Term(0),
        },
    };
    let mut chain = Chain {
        base,
        sealed: Vec::new(),
        warnings: Vec::new(),
        notes: Vec::new(),
        leftovers: Vec::new(),
    };
    for &(first, path) in &all[..below] {
        chain.leftovers.push(path.clone());
        chain.leftovers.extend(listed.indices.get(&first).cloned());
        chain.notes.push(format!(
            "removed {}: it holds only entries before the log's first index {}, left by a \
             crash during a trim",
            path.display(),
            start.first_index.0
        ));
    }
    for pair in segments.windows(2) {
        let ((first, path), (next_first, _)) = (pair[0], pair[1]);
        let prev_term = chain
            .sealed
            .last()
            .map_or(base.prev_term, |s| s.index.last_term);
        let index = sealed_index(path, first, prev_term, &mut chain.warnings)?;
        if index.last_index.next() != next_first {
            return Err(chain_break(dir, path, &index, next_first));
        }
        chain.sealed.push(Sealed {
            path: path.clone(),
            index,
        });
    }
    for (first, path) in &listed.indices {
        if !listed.segments.contains_key(first) {
            chain.leftovers.push(path.clone());
            chain.notes.push(format!(
                "removed {}: the index of a segment a truncation removed",
                path.display()
            ));
        }
    }
    chain.leftovers.extend(listed.temps.iter().cloned());
    Ok(chain)
}

/// The checked index of the sealed segment at `path`, rebuilt by a scan (with a warning)
/// if it is missing or damaged.
fn sealed_index(
    path: &Path,
    first: Index,
    prev_term: Term,
    warnings: &mut Vec<String>,
) -> Result<SparseIndex, StorageError> {
    let why = match segment::read_index(path, first)? {
        Ok(index) => match segment::check_tail(path, &index) {
            Ok(()) => return Ok(index),
            // A whole file the index does not describe: an index of an earlier life of
            // the segment, or damage; the scan below decides.
            Err(StorageError::Segment { problem, .. }) if problem.contains("index says") => problem,
            Err(error) => return Err(error),
        },
        Err(why) => why,
    };
    let file = File::open(path).map_err(io_error(path, "opening"))?;
    let start = Start {
        first_index: first,
        prev_term,
    };
    let scanned = recovery::scan(path, BufReader::with_capacity(1 << 16, &file), start)?;
    if let Some(torn) = &scanned.torn {
        return Err(damaged(
            path,
            format!(
                "sealed segment's {} {} is damaged ({}); sealed segments are never written \
                 again, so this is not a torn write; refusing to start",
                torn.place(),
                torn.line,
                torn.reason
            ),
        ));
    }
    let Some(last) = scanned.entries.last() else {
        return Err(damaged(path, "sealed segment is empty".to_string()));
    };
    let index = SparseIndex::build(first, last.term, &scanned.offsets, scanned.valid_len);
    segment::write_index(path, &index)?;
    warnings.push(format!(
        "rebuilt the index of sealed segment {} by scanning it: its index was {why}",
        path.display()
    ));
    Ok(index)
}

fn chain_break(dir: &Path, path: &Path, index: &SparseIndex, next_first: Index) -> StorageError {
    let expected = index.last_index.next();
    if next_first > expected {
        return damaged(
            &segment::segment_path(dir, expected),
            format!(
                "missing: {} ends at index {}, the next segment present starts at {}; \
                 entries {}..={} are lost, refusing to start",
                path.display(),
                index.last_index.0,
                next_first.0,
                expected.0,
                next_first.0 - 1
            ),
        );
    }
    damaged(
        path,
        format!(
            "sealed segment ends at index {}, past the start of the next segment ({}); \
             refusing to start",
            index.last_index.0, next_first.0
        ),
    )
}

fn file_len(file: &File, path: &Path) -> Result<u64, StorageError> {
    Ok(file
        .metadata()
        .map_err(io_error(path, "reading the length of"))?
        .len())
}
