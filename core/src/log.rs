//! The in-memory Raft log: a window onto the node's whole log.
//!
//! The whole log lives in the driver's storage. The core holds a contiguous window of it,
//! `(prev, entries)`: the entry just before the window (`prev`, its index and term) and the
//! entries after it, up to the last. Everything Raft decides needs only this window
//! (etcd-io/raft keeps the same "valid term range" `[first - 1, last]`): a consistency check
//! at `prev` or later, the last entry for votes, uncommitted entries for conflicts. What lies
//! before `prev` is committed, so it matches every future leader's log (Leader
//! Completeness) and is read back from storage only to catch a follower up.
//!
//! The log knows nothing about durability or commitment; `RaftCore` decides how far the
//! window may start (never past an entry that is not committed, durable and applied). It
//! checks its input once where entries enter from outside ([`Log::from_tail`]) and asserts
//! its invariants on every mutation after that. Asking for an index outside the window is
//! an error value ([`NotHeld`]), never a panic.

use crate::types::{Entry, EntryId, Index, Term};
use std::fmt;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Log {
    /// The entry just before the window: `EntryId::ZERO` while the window starts at index 1.
    /// Invariant: `prev.term == 0` exactly when `prev.index == 0`.
    prev: EntryId,
    /// Invariant: `entries[k].index == prev.index + 1 + k`; terms never decrease from
    /// `prev.term` along the window; no entry has term 0.
    entries: Vec<Entry>,
    /// Invariant: the sum of `size_bytes()` over `entries`.
    held_bytes: usize,
}

/// Entries read back from storage that cannot form a Raft log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogError {
    /// An entry has index `found` where `expected` was due.
    Gap { expected: Index, found: Index },
    /// Entry `index` has a smaller term than the entry before it.
    TermDecreases {
        index: Index,
        term: Term,
        previous: Term,
    },
    /// Entry `index` has term 0, which no entry may carry.
    ZeroTerm { index: Index },
    /// The entry before the tail is at index 0 with a term, or at an index with term 0.
    BadBoundary { prev: EntryId },
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Gap { expected, found } => {
                write!(
                    f,
                    "log gap: expected index {}, found {}",
                    expected.0, found.0
                )
            }
            LogError::TermDecreases {
                index,
                term,
                previous,
            } => write!(
                f,
                "term decreases at index {}: {} after {}",
                index.0, term.0, previous.0
            ),
            LogError::ZeroTerm { index } => write!(f, "entry {} has term 0", index.0),
            LogError::BadBoundary { prev } => write!(
                f,
                "the entry before the log's tail, index {} term {}, is not a valid boundary",
                prev.index.0, prev.term.0
            ),
        }
    }
}

impl std::error::Error for LogError {}

/// An index the window does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotHeld {
    /// Before the window: in storage only (or trimmed). `prev` is the window's boundary.
    Before { index: Index, prev: EntryId },
    /// After the last entry.
    After { index: Index, last_index: Index },
}

impl fmt::Display for NotHeld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotHeld::Before { index, prev } => write!(
                f,
                "index {} lies before the in-memory log, which starts after {}",
                index.0, prev.index.0
            ),
            NotHeld::After { index, last_index } => write!(
                f,
                "index {} lies beyond the last index {}",
                index.0, last_index.0
            ),
        }
    }
}

impl std::error::Error for NotHeld {}

impl Log {
    pub fn new() -> Log {
        Log::default()
    }

    /// Builds the window from entries read back from storage: `entries` follow `prev`.
    /// Checks they form a valid log (the one gateway from storage into the core).
    pub fn from_tail(prev: EntryId, entries: Vec<Entry>) -> Result<Log, LogError> {
        if (prev.index == Index::ZERO) != (prev.term == Term(0)) {
            return Err(LogError::BadBoundary { prev });
        }
        let mut previous = prev;
        for entry in &entries {
            let expected = previous.index.next();
            if entry.index != expected {
                return Err(LogError::Gap {
                    expected,
                    found: entry.index,
                });
            }
            if entry.term == Term(0) {
                return Err(LogError::ZeroTerm { index: entry.index });
            }
            if entry.term < previous.term {
                return Err(LogError::TermDecreases {
                    index: entry.index,
                    term: entry.term,
                    previous: previous.term,
                });
            }
            previous = entry.id();
        }
        let held_bytes = entries.iter().map(Entry::size_bytes).sum();
        Ok(Log {
            prev,
            entries,
            held_bytes,
        })
    }

    /// The entry just before the window.
    pub fn prev(&self) -> EntryId {
        self.prev
    }

    /// The first index the window holds (`last_index() + 1` when it holds none).
    pub fn first_held(&self) -> Index {
        self.prev.index.next()
    }

    pub fn last_index(&self) -> Index {
        self.prev.index.plus(self.entries.len() as u64)
    }

    pub fn last_term(&self) -> Term {
        self.entries
            .last()
            .map_or(self.prev.term, |entry| entry.term)
    }

    /// The entries held in memory, from `first_held()` on.
    pub fn held(&self) -> &[Entry] {
        &self.entries
    }

    /// `size_bytes()` of the entries held in memory.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Where `index` sits in `entries`, or why it is not held.
    fn position(&self, index: Index) -> Result<usize, NotHeld> {
        if index <= self.prev.index {
            return Err(NotHeld::Before {
                index,
                prev: self.prev,
            });
        }
        if index > self.last_index() {
            return Err(NotHeld::After {
                index,
                last_index: self.last_index(),
            });
        }
        Ok((index.0 - self.prev.index.0 - 1) as usize)
    }

    /// The term of the entry at `index`, for `index` in `[prev.index, last_index]`.
    pub fn term_at(&self, index: Index) -> Result<Term, NotHeld> {
        if index == self.prev.index {
            return Ok(self.prev.term);
        }
        self.position(index).map(|k| self.entries[k].term)
    }

    pub fn entry(&self, index: Index) -> Result<&Entry, NotHeld> {
        self.position(index).map(|k| &self.entries[k])
    }

    /// Whether the window holds an entry at `index` with `term` (`prev` included). An index
    /// before the window is unknown here, so it does not match: callers that can vouch for
    /// it (a committed index) check that first.
    pub fn matches(&self, index: Index, term: Term) -> bool {
        self.term_at(index) == Ok(term)
    }

    /// The entries in `from..=to`. Both ends must be held (or `to == from - 1`, empty).
    pub fn slice(&self, from: Index, to: Index) -> Result<&[Entry], NotHeld> {
        if to < from {
            return Ok(&[]);
        }
        let start = self.position(from)?;
        let end = self.position(to)?;
        Ok(&self.entries[start..=end])
    }

    /// Up to `max_count` entries from `from`, stopping before `max_bytes` is exceeded but
    /// always including at least one entry if any exists. `from` may be `last_index + 1`
    /// (nothing to send); before the window it is an error.
    pub fn batch_from(
        &self,
        from: Index,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, NotHeld> {
        if from == self.last_index().next() {
            return Ok(Vec::new());
        }
        let start = self.position(from)?;
        Ok(take_batch(&self.entries[start..], max_count, max_bytes).to_vec())
    }

    /// Whether a candidate whose log ends at (`last_term`, `last_index`) is at least as
    /// up to date as this log (§5.4.1): compare last terms first, then last indexes.
    pub fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    /// The first index holding the same term as the entry at `index` (for conflict hints),
    /// or as early as the window can tell: `prev.index` when the term reaches back to it.
    pub fn first_index_of_term_at(&self, index: Index) -> Index {
        let Ok(term) = self.term_at(index) else {
            return index;
        };
        if term == self.prev.term {
            return self.prev.index.max(Index(1)).min(index);
        }
        // Terms never decrease along the log, so binary search on the term (a walk back
        // would cost the term's length on every rejected AppendEntries).
        let before = self.entries.partition_point(|entry| entry.term < term);
        self.prev.index.plus(before as u64 + 1)
    }

    /// The last index holding `term`, if the window holds one (`prev` included).
    pub fn last_index_of_term(&self, term: Term) -> Option<Index> {
        // Terms never decrease along the log, so binary search on the term.
        let after = self.entries.partition_point(|entry| entry.term <= term);
        if after == 0 {
            let at_prev = self.prev.term == term && self.prev.index > Index::ZERO;
            return at_prev.then_some(self.prev.index);
        }
        (self.entries[after - 1].term == term).then(|| self.prev.index.plus(after as u64))
    }

    /// The first of `entries` that this log lacks or holds with another term, if any.
    ///
    /// `entries` must be contiguous and start within the window or just after it; ones this
    /// log already holds with the same term are skipped, so that a stale or duplicated
    /// AppendEntries never truncates anything.
    pub fn first_conflict(&self, entries: &[Entry]) -> Option<usize> {
        if let Some(first) = entries.first() {
            assert!(
                first.index > self.prev.index,
                "conflict check before window"
            );
        }
        entries
            .iter()
            .position(|entry| !self.matches(entry.index, entry.term))
    }

    /// Appends entries that follow the last one. Panics on a gap: that is a core bug.
    pub fn append(&mut self, entries: &[Entry]) {
        for entry in entries {
            assert_eq!(
                entry.index,
                self.last_index().next(),
                "log append leaves a gap"
            );
            assert!(
                entry.term >= self.last_term(),
                "log append decreases the term"
            );
            assert!(entry.term > Term(0), "log entry with term 0");
            self.held_bytes += entry.size_bytes();
            self.entries.push(entry.clone());
        }
    }

    /// Removes every entry above `index`, which must be held or be `prev`: the window's
    /// start is committed and never truncated.
    pub fn truncate_after(&mut self, index: Index) {
        assert!(
            index >= self.prev.index,
            "truncation below the in-memory window"
        );
        let keep = (index.0 - self.prev.index.0) as usize;
        if keep < self.entries.len() {
            let dropped: usize = self.entries[keep..].iter().map(Entry::size_bytes).sum();
            self.held_bytes -= dropped;
            self.entries.truncate(keep);
        }
    }

    /// Drops the entries up to and including `index` from memory; the window then starts
    /// after it. The caller vouches that they are committed and durable in storage.
    pub fn forget_through(&mut self, index: Index) {
        let term = self
            .term_at(index)
            .expect("forgetting entries the window holds");
        let count = (index.0 - self.prev.index.0) as usize;
        let dropped: usize = self.entries[..count].iter().map(Entry::size_bytes).sum();
        self.entries.drain(..count);
        self.held_bytes -= dropped;
        self.prev = EntryId { index, term };
    }

    /// The highest index up to `limit` whose forgetting leaves at most `keep_bytes` held,
    /// or `None` when nothing up to `limit` need go.
    pub fn forget_point(&self, limit: Index, keep_bytes: usize) -> Option<Index> {
        let mut excess = self.held_bytes.checked_sub(keep_bytes)?;
        if excess == 0 {
            return None;
        }
        let mut point = None;
        for entry in &self.entries {
            if entry.index > limit || excess == 0 {
                break;
            }
            excess = excess.saturating_sub(entry.size_bytes());
            point = Some(entry.index);
        }
        point
    }
}

/// The longest prefix of `entries` within `max_count` and `max_bytes`, at least one entry
/// when there is any. Shared with drivers that read entries back from storage for a
/// catch-up, so that both batch alike.
pub fn take_batch(entries: &[Entry], max_count: usize, max_bytes: usize) -> &[Entry] {
    let mut bytes = 0;
    let mut count = 0;
    for entry in entries.iter().take(max_count) {
        bytes += entry.size_bytes();
        if count > 0 && bytes > max_bytes {
            break;
        }
        count += 1;
    }
    &entries[..count]
}
