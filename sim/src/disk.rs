//! Simulated storage of one node: what the OS holds, and what an fsync made durable.
//!
//! A write is durable only once an fsync that started after it completes. Fsyncs run one at
//! a time and each covers everything written before it started (group commit, as the node
//! does). A crash loses what was not synced, except that the OS may already have written a
//! prefix of it, the last record of which may be torn part-way: a real disk gives no promise
//! either way, so the core must be safe under both.

use crate::params::DiskParams;
use crate::report::Violation;
use crate::rng::SimRng;
use replog_core::{
    Entry, EntryId, FetchRequest, HardState, Index, Install, MembershipHistory, NodeId, Recovered,
    SessionsCheckpoint, Write, WriteId,
};
use replog_driver::apply::{self, WriteTarget};
use replog_driver::catch_up::{self, CatchUpSource, ServeError};
use replog_driver::segments;
use std::convert::Infallible;

pub use replog_driver::catch_up::Answer as FetchAnswer;
use std::collections::VecDeque;

/// What survives a crash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Durable {
    pub hard_state: HardState,
    /// The entry before the first one kept: `EntryId::ZERO` until a trim or an install.
    /// Invariant: never goes back; `boundary.index <= commit_index`.
    pub boundary: EntryId,
    /// Invariant: contiguous from `boundary.index + 1`.
    pub entries: Vec<Entry>,
    /// The commit index the driver last recorded (the node keeps it in `metadata.json`).
    pub commit_index: Index,
    /// The newest session checkpoint written (the node keeps it in `sessions.json`);
    /// `None` until the first, which means no session entry up to `commit_index`.
    /// Invariant: `boundary.index <= sessions.through`: a trim waits for it.
    pub sessions: Option<SessionsCheckpoint>,
    /// The applied configurations (the node keeps them in `membership.json`).
    pub memberships: MembershipHistory,
    /// How `entries` lie in segment files, as on the node (`replog_driver::segments`
    /// decides when one is sealed and which go at a trim).
    pub segments: Segments,
}

/// The segments of a simulated log: sealed ones, then the open one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Segments {
    /// Sealed segments, oldest first. Invariant: a chain from `boundary.index + 1`: each
    /// starts after the previous one's last entry, and the open one after the last.
    pub sealed: Vec<Sealed>,
    /// Where the open segment starts (`boundary.index + 1` without sealed ones).
    pub open_first: Index,
    /// The modelled bytes of the open segment's lines.
    pub open_bytes: u64,
    /// The configured segment size ([`DiskParams::segment_bytes`]).
    pub segment_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sealed {
    pub first: Index,
    pub last: EntryId,
}

/// The modelled size of an entry's line in a segment file: its payload's size plus about
/// what the node's JSON line adds around it (checksum, index, term, field names).
fn line_bytes(entry: &Entry) -> u64 {
    40 + entry.payload.size_bytes() as u64
}

impl Durable {
    /// The entry at `index`, if this disk still holds it.
    pub fn entry(&self, index: Index) -> Option<&Entry> {
        if index <= self.boundary.index {
            return None;
        }
        self.entries
            .get((index.0 - self.boundary.index.0 - 1) as usize)
    }

    /// The id of the entry at `index`: held, or the boundary itself.
    pub fn id_at(&self, index: Index) -> Option<EntryId> {
        if index == self.boundary.index {
            return Some(self.boundary);
        }
        self.entry(index).map(Entry::id)
    }

    pub fn last_index(&self) -> Index {
        self.boundary.index.plus(self.entries.len() as u64)
    }

    /// Up to where the session table is known: without a checkpoint (or with an empty
    /// one), it is empty up to the commit index.
    pub fn sessions_through(&self) -> Index {
        SessionsCheckpoint::through_given(self.sessions.as_ref(), self.commit_index)
    }

    /// How many segment files hold the log, the open one included.
    pub fn segment_count(&self) -> usize {
        self.segments.sealed.len() + 1
    }

    /// Reads the log back from its segments, as the node's recovery does: checks that
    /// they form a chain from the boundary to the last entry (a broken one is a bug in
    /// this model).
    fn check_segments(&self) {
        let segments = &self.segments;
        let mut next = self.boundary.index.next();
        for sealed in &segments.sealed {
            assert_eq!(sealed.first, next, "segments form a chain");
            assert!(
                sealed.last.index >= sealed.first,
                "a sealed segment holds entries"
            );
            assert_eq!(self.id_at(sealed.last.index), Some(sealed.last));
            next = sealed.last.index.next();
        }
        assert_eq!(
            segments.open_first, next,
            "the open segment follows the sealed"
        );
        assert!(self.last_index() >= segments.open_first.prev());
    }

    /// The modelled bytes of the entries `from..` (within the log).
    fn bytes_from(&self, from: Index) -> u64 {
        self.from(from).iter().map(line_bytes).sum()
    }

    /// The entries from `from` on (`from` past the boundary).
    fn from(&self, from: Index) -> &[Entry] {
        let start = self.boundary.index.count_to(from.prev()) as usize;
        &self.entries[start.min(self.entries.len())..]
    }
}

// Most records are writes: boxing them would add an allocation to every one.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
enum Record {
    Write(Write),
    Commit(Index),
}

/// What a crash did to the unsynced records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashLoss {
    pub survived: u32,
    pub lost: u32,
    pub torn: bool,
}

pub struct Disk {
    node: NodeId,
    durable: Durable,
    /// Records handed to the OS and not yet covered by a completed fsync, oldest first.
    unsynced: VecDeque<Record>,
    /// How many records at the front of `unsynced` the fsync in progress covers.
    /// Invariant: `syncing <= unsynced.len()`, and 0 exactly when no fsync is in progress.
    syncing: usize,
    /// How many of `unsynced` are core writes (not commit-index notes).
    unsynced_writes: usize,
    /// The last entry a trim asked for may go (within the durable commit index); what a
    /// durable session checkpoint does not cover yet waits for one ([`Disk::retry_trim`]).
    trim_wanted: Index,
}

impl Disk {
    pub fn new(node: NodeId, segment_bytes: u64) -> Disk {
        let segments = Segments {
            open_first: Index(1),
            segment_bytes,
            ..Segments::default()
        };
        Disk {
            node,
            durable: Durable {
                segments,
                ..Durable::default()
            },
            unsynced: VecDeque::new(),
            syncing: 0,
            unsynced_writes: 0,
            trim_wanted: Index::ZERO,
        }
    }

    pub fn durable(&self) -> &Durable {
        &self.durable
    }

    /// Hands a write to the OS.
    pub fn write(&mut self, write: Write) {
        self.unsynced.push_back(Record::Write(write));
        self.unsynced_writes += 1;
    }

    /// The boundary of the newest install handed to the OS and not yet synced.
    pub fn unsynced_install(&self) -> Option<EntryId> {
        self.unsynced.iter().rev().find_map(|record| match record {
            Record::Write(write) => write.install.as_ref().map(|install| install.last),
            Record::Commit(_) => None,
        })
    }

    /// Core writes handed to the OS and not yet covered by a completed fsync.
    pub fn unsynced_writes(&self) -> usize {
        self.unsynced_writes
    }

    /// Records the commit index lazily: it rides along with the next fsync.
    pub fn note_commit(&mut self, index: Index) {
        self.unsynced.push_back(Record::Commit(index));
    }

    /// Starts an fsync of everything written so far, if none is running and there is
    /// something to sync. Returns whether one started.
    pub fn start_fsync(&mut self) -> bool {
        if self.syncing > 0 || self.unsynced.is_empty() {
            return false;
        }
        self.syncing = self.unsynced.len();
        true
    }

    /// A simulated fsync latency.
    pub fn fsync_latency_us(params: &DiskParams, rng: &mut SimRng) -> u64 {
        if rng.chance(params.slow_fsync) {
            return rng.between(
                params.fsync_us_max,
                params.slow_fsync_us_max.max(params.fsync_us_max),
            );
        }
        rng.between(params.fsync_us_min, params.fsync_us_max)
    }

    /// The fsync in progress completed. Returns the highest write id it made durable.
    pub fn fsync_done(&mut self) -> Result<Option<WriteId>, Violation> {
        let mut highest = None;
        for _ in 0..std::mem::take(&mut self.syncing) {
            let record = self.unsynced.pop_front().expect("syncing <= unsynced");
            if let Record::Write(write) = &record {
                highest = Some(write.id);
                self.unsynced_writes -= 1;
            }
            self.apply(record, usize::MAX)?;
        }
        Ok(highest)
    }

    /// The process died: keep a random prefix of the unsynced records (often none), the last
    /// maybe torn, and forget the rest.
    pub fn crash(&mut self, params: &DiskParams, rng: &mut SimRng) -> Result<CrashLoss, Violation> {
        self.syncing = 0;
        self.trim_wanted = Index::ZERO; // The process's memory, not the disk's.
        let total = self.unsynced.len();
        let mut loss = CrashLoss::default();
        if total > 0 && rng.chance(params.unsynced_survive) {
            let survive = rng.between(1, total as u64) as usize;
            for position in 0..survive {
                let record = self.unsynced.pop_front().expect("survive <= total");
                let last = position + 1 == survive;
                let parts = if last && rng.chance(params.torn) {
                    loss.torn = true;
                    rng.below(record_parts(&record) as u64) as usize
                } else {
                    usize::MAX
                };
                self.apply(record, parts)?;
            }
            loss.survived = survive as u32;
        }
        loss.lost = self.unsynced.len() as u32;
        self.unsynced.clear();
        self.unsynced_writes = 0;
        Ok(loss)
    }

    /// What a restarted node reads back, as the real node does from its files: the hard
    /// state, the commit index it recorded, and only the log's tail after that index (what
    /// comes before it is committed; the core asks for it with `Fetch` when a follower
    /// needs it).
    pub fn recovered(&self) -> Recovered {
        let durable = &self.durable;
        durable.check_segments();
        let commit = durable.commit_index;
        // The table re-applies the committed entries after its checkpoint.
        let from = commit.min(durable.sessions_through());
        Recovered {
            hard_state: durable.hard_state,
            prev: durable.id_at(from).expect("the tail's start is on disk"),
            entries: durable.from(from.next()).to_vec(),
            commit_index: commit,
            sessions: durable.sessions.clone(),
            membership: durable.memberships.newest().cloned(),
        }
    }

    /// Serves a core's `Fetch` from the durable log with the node's catch-up code
    /// ([`replog_driver::catch_up`]): entries, or "trimmed" with the boundary when they
    /// are gone. The core asks only for committed, durable entries; anything else breaks
    /// the contract.
    pub fn fetch(&self, request: &FetchRequest) -> Result<FetchAnswer, Violation> {
        let durable = &self.durable;
        if request.from == Index(0) || request.from > durable.last_index() {
            return Err(self.violation(format!(
                "fetch from {} for {}, but the durable log ends at {}",
                request.from,
                request.peer,
                durable.last_index()
            )));
        }
        catch_up::serve(durable, request).map_err(|error| match error {
            ServeError::OutsideLog { .. } => unreachable!("checked above"),
            ServeError::Read(never) => match never {},
        })
    }

    /// Retention: drops the durable entries before `before`, never past the durable commit
    /// index (the node's storage refuses the same), nor past the durable session
    /// checkpoint's `through` (a restart replays the table from there); the rest of the
    /// way waits for [`Disk::retry_trim`]. Returns the new boundary if it moved.
    pub fn trim(&mut self, before: Index) -> Option<EntryId> {
        let durable = &self.durable;
        let allowed = before
            .prev()
            .min(durable.commit_index)
            .min(durable.last_index());
        self.trim_wanted = self.trim_wanted.max(allowed);
        self.retry_trim()
    }

    /// Trims as far as asked for, now that a later checkpoint may be durable.
    pub fn retry_trim(&mut self) -> Option<EntryId> {
        let durable = &mut self.durable;
        let point = self.trim_wanted.min(durable.sessions_through());
        if point <= durable.boundary.index {
            return None;
        }
        let sealed = &mut durable.segments.sealed;
        let count = segments::trimmed(sealed, point.next(), |sealed| sealed.last.index);
        let boundary = sealed[..count].last()?.last;
        sealed.drain(..count);
        let entries = durable.boundary.index.count_to(boundary.index) as usize;
        durable.entries.drain(..entries);
        durable.boundary = boundary;
        durable.memberships.trimmed(boundary.index.next());
        Some(boundary)
    }

    /// How long a read for a fetch takes: a fraction of an fsync, as a cached read is.
    pub fn read_latency_us(params: &DiskParams, rng: &mut SimRng) -> u64 {
        rng.between(params.fsync_us_min / 4, params.fsync_us_max / 2)
    }

    /// Applies a record to durable state, through the applier the node runs too
    /// ([`replog_driver::apply`]). Only the first `parts` of a write survive (a torn
    /// record); `usize::MAX` applies all.
    fn apply(&mut self, record: Record, parts: usize) -> Result<(), Violation> {
        match record {
            Record::Commit(index) => {
                if parts > 0 {
                    self.durable.commit_index = self.durable.commit_index.max(index);
                }
                Ok(())
            }
            Record::Write(write) => apply::apply(&mut self.durable, &write, parts)
                .map_err(|broken| self.violation(broken.to_string())),
        }
    }

    fn violation(&self, detail: String) -> Violation {
        Violation::new("Durable State Monotonic", &[self.node], detail)
    }
}

/// The simulated disk as the applier's target: the durable state itself (what reached
/// the disk is applied at once, the last record possibly torn).
impl<'w> WriteTarget<'w> for Durable {
    fn hard_state(&self) -> HardState {
        self.hard_state
    }

    fn commit_index(&self) -> Index {
        self.commit_index
    }

    fn last_index(&self) -> Index {
        Durable::last_index(self)
    }

    fn sessions_through(&self) -> Option<Index> {
        self.sessions.as_ref().map(|checkpoint| checkpoint.through)
    }

    fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    fn install(&mut self, install: &Install) {
        self.boundary = install.last;
        self.entries.clear();
        self.commit_index = self.commit_index.max(install.last.index);
        let segments = &mut self.segments;
        segments.sealed.clear();
        segments.open_first = install.last.index.next();
        segments.open_bytes = 0;
    }

    fn truncate_after(&mut self, after: Index) {
        if after >= self.last_index() {
            return;
        }
        let segments = &mut self.segments;
        if after.next() < segments.open_first {
            let sealed = &segments.sealed;
            let holder = segments::reopened_by_truncation(sealed, after, |sealed| sealed.first);
            segments.open_first = sealed[holder].first;
            segments.sealed.truncate(holder);
        }
        let keep = self.boundary.index.count_to(after) as usize;
        self.entries.truncate(keep);
        self.segments.open_bytes = self.bytes_from(self.segments.open_first);
    }

    fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let batch: u64 = entries.iter().map(line_bytes).sum();
        let segments = &mut self.segments;
        if segments::seals_before(segments.open_bytes, batch, segments.segment_bytes) {
            let last = first.index.prev();
            let term = self
                .id_at(last)
                .expect("the open segment holds entries")
                .term;
            let segments = &mut self.segments;
            segments.sealed.push(Sealed {
                first: segments.open_first,
                last: EntryId { index: last, term },
            });
            segments.open_first = first.index;
            segments.open_bytes = 0;
        }
        self.segments.open_bytes += batch;
        self.entries.extend_from_slice(entries);
    }

    fn keep_sessions(&mut self, checkpoint: &SessionsCheckpoint) {
        self.sessions = Some(checkpoint.clone());
    }

    fn memberships(&mut self) -> &mut MembershipHistory {
        &mut self.memberships
    }
}

/// The simulated disk as a source of catch-up reads: its durable entries.
impl CatchUpSource for Durable {
    type Error = Infallible;

    fn boundary(&self) -> EntryId {
        self.boundary
    }

    fn last_index(&self) -> Index {
        Durable::last_index(self)
    }

    fn sessions(&self) -> Option<&SessionsCheckpoint> {
        self.sessions.as_ref()
    }

    fn memberships(&self) -> &MembershipHistory {
        &self.memberships
    }

    fn read(&self, from: Index, to: Index) -> Result<Vec<Entry>, Infallible> {
        let start = self.boundary.index.count_to(from.prev()) as usize;
        let end = self.boundary.index.count_to(to) as usize;
        Ok(self.entries[start..end].to_vec())
    }
}

/// The pieces a torn write can stop between.
fn record_parts(record: &Record) -> usize {
    match record {
        Record::Commit(_) => 1,
        Record::Write(write) => apply::part_count(write),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Params;
    use crate::rng::{Ratio, Stream};
    use replog_core::{Payload, Term};

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index: Index(index),
            term: Term(term),
            payload: Payload::Noop,
        }
    }

    fn write(id: u64, term: u64, entries: Vec<Entry>) -> Write {
        Write {
            memberships: Vec::new(),
            id: WriteId(id),
            hard_state: Some(HardState {
                term: Term(term),
                voted_for: None,
            }),
            install: None,
            truncate_after: None,
            entries,
            sessions: None,
        }
    }

    #[test]
    fn only_fsynced_writes_survive_a_crash_that_keeps_nothing() {
        let mut params = Params::calm(3).disk;
        params.unsynced_survive = Ratio::NEVER;
        let mut rng = SimRng::new(1, Stream::Disk);
        let mut disk = Disk::new(NodeId(1), 4096);
        disk.write(write(1, 1, vec![entry(1, 1)]));
        assert!(disk.start_fsync());
        disk.write(write(2, 1, vec![entry(2, 1)]));
        assert!(!disk.start_fsync(), "one fsync at a time");
        assert_eq!(disk.fsync_done().unwrap(), Some(WriteId(1)));
        let loss = disk.crash(&params, &mut rng).unwrap();
        assert_eq!(loss.lost, 1);
        assert_eq!(disk.recovered().entries, vec![entry(1, 1)]);
    }

    #[test]
    fn a_torn_write_keeps_a_prefix_of_its_parts() {
        let mut params = Params::calm(3).disk;
        params.unsynced_survive = Ratio(1, 1);
        params.torn = Ratio(1, 1);
        for seed in 0..20 {
            let mut rng = SimRng::new(seed, Stream::Disk);
            let mut disk = Disk::new(NodeId(1), 4096);
            disk.write(write(1, 2, vec![entry(1, 1), entry(2, 2), entry(3, 2)]));
            disk.crash(&params, &mut rng).unwrap();
            let recovered = disk.recovered();
            assert!(recovered.entries.len() < 3, "torn means incomplete");
            if !recovered.entries.is_empty() {
                assert_eq!(recovered.hard_state.term, Term(2), "hard state goes first");
            }
        }
    }

    #[test]
    fn a_durable_vote_that_changes_within_its_term_is_reported() {
        let mut disk = Disk::new(NodeId(1), 4096);
        let vote = |candidate| Write {
            id: WriteId(1),
            hard_state: Some(HardState {
                term: Term(3),
                voted_for: Some(NodeId(candidate)),
            }),
            ..Write::default()
        };
        disk.write(vote(2));
        disk.write(vote(3));
        disk.start_fsync();
        let violation = disk.fsync_done().unwrap_err();
        assert_eq!(violation.invariant, "Durable State Monotonic");
    }

    #[test]
    fn trims_delete_whole_sealed_segments_and_a_restart_reads_them_back() {
        // Each no-op line is modelled as 41 bytes: two per 100-byte segment.
        let mut disk = Disk::new(NodeId(1), 100);
        for index in 1..=9 {
            disk.write(write(index, 1, vec![entry(index, 1)]));
        }
        disk.note_commit(Index(8));
        disk.start_fsync();
        disk.fsync_done().unwrap();
        assert_eq!(disk.durable().segment_count(), 5, "1-2, 3-4, 5-6, 7-8, 9");
        assert_eq!(disk.trim(Index(4)).map(|id| id.index), Some(Index(2)));
        assert_eq!(disk.trim(Index(9)).map(|id| id.index), Some(Index(8)));
        assert_eq!(disk.durable().segment_count(), 1, "the open one stays");
        let recovered = disk.recovered();
        assert_eq!(recovered.prev.index, Index(8));
        assert_eq!(recovered.entries, vec![entry(9, 1)]);
    }

    #[test]
    fn a_truncation_into_a_sealed_segment_reopens_it() {
        let mut disk = Disk::new(NodeId(1), 100);
        for index in 1..=6 {
            disk.write(write(index, 1, vec![entry(index, 1)]));
        }
        disk.write(Write {
            id: WriteId(7),
            hard_state: Some(HardState {
                term: Term(2),
                voted_for: None,
            }),
            truncate_after: Some(Index(3)),
            entries: vec![entry(4, 2)],
            ..Write::default()
        });
        disk.start_fsync();
        disk.fsync_done().unwrap();
        let durable = disk.durable();
        assert_eq!(durable.segment_count(), 2, "1-2, then 3-4 reopened");
        assert_eq!(durable.segments.open_first, Index(3));
        assert_eq!(durable.last_index(), Index(4));
        disk.recovered();
    }
}
