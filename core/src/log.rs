//! The in-memory Raft log: a contiguous run of entries starting at index 1.
//!
//! The log knows nothing about durability or commitment; `RaftCore` tracks those. It checks
//! its input once where entries enter from outside ([`Log::from_entries`]) and asserts its
//! invariants on every mutation after that.

use crate::types::{Entry, Index, Term};
use std::fmt;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Log {
    /// Invariant: `entries[k].index == k + 1` (contiguous from 1), and terms never decrease
    /// along the log. Room is left for compaction: a snapshot would move the start.
    entries: Vec<Entry>,
}

/// Entries read back from storage that cannot form a Raft log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogError {
    /// Entry at `position` has index `found` where `expected` was due.
    Gap { expected: Index, found: Index },
    /// Entry `index` has a smaller term than the entry before it.
    TermDecreases {
        index: Index,
        term: Term,
        previous: Term,
    },
    /// Entry `index` has term 0, which no entry may carry.
    ZeroTerm { index: Index },
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
        }
    }
}

impl std::error::Error for LogError {}

impl Log {
    pub fn new() -> Log {
        Log::default()
    }

    /// Builds a log from entries read back from storage, checking they form a valid log.
    pub fn from_entries(entries: Vec<Entry>) -> Result<Log, LogError> {
        let mut previous = Term(0);
        for (position, entry) in entries.iter().enumerate() {
            let expected = Index(position as u64 + 1);
            if entry.index != expected {
                return Err(LogError::Gap {
                    expected,
                    found: entry.index,
                });
            }
            if entry.term == Term(0) {
                return Err(LogError::ZeroTerm { index: entry.index });
            }
            if entry.term < previous {
                return Err(LogError::TermDecreases {
                    index: entry.index,
                    term: entry.term,
                    previous,
                });
            }
            previous = entry.term;
        }
        Ok(Log { entries })
    }

    pub fn last_index(&self) -> Index {
        Index(self.entries.len() as u64)
    }

    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(Term(0), |entry| entry.term)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The term of the entry at `index`; `Some(Term(0))` at index 0, `None` past the end.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        if index == Index::ZERO {
            return Some(Term(0));
        }
        self.entry(index).map(|entry| entry.term)
    }

    pub fn entry(&self, index: Index) -> Option<&Entry> {
        let position = index.0.checked_sub(1)? as usize;
        self.entries.get(position)
    }

    /// Whether this log holds an entry at `index` with `term` (index 0 always matches).
    pub fn matches(&self, index: Index, term: Term) -> bool {
        self.term_at(index) == Some(term)
    }

    /// All entries in `from..=to`, clamped to the log.
    pub fn slice(&self, from: Index, to: Index) -> &[Entry] {
        let start = (from.0.max(1) - 1) as usize;
        let end = (to.0 as usize).min(self.entries.len());
        if start >= end {
            return &[];
        }
        &self.entries[start..end]
    }

    /// All entries.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Up to `max_count` entries from `from`, stopping before `max_bytes` is exceeded but
    /// always including at least one entry if any exists.
    pub fn batch_from(&self, from: Index, max_count: usize, max_bytes: usize) -> Vec<Entry> {
        let available = self.slice(from, self.last_index());
        let mut bytes = 0;
        let mut count = 0;
        for entry in available.iter().take(max_count) {
            bytes += entry.size_bytes();
            if count > 0 && bytes > max_bytes {
                break;
            }
            count += 1;
        }
        available[..count].to_vec()
    }

    /// Whether a candidate whose log ends at (`last_term`, `last_index`) is at least as
    /// up to date as this log (§5.4.1): compare last terms first, then last indexes.
    pub fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    /// The first index holding the same term as the entry at `index` (for conflict hints).
    pub fn first_index_of_term_at(&self, index: Index) -> Index {
        if index == Index::ZERO {
            return index;
        }
        let Some(term) = self.term_at(index) else {
            return index;
        };
        // Terms never decrease along the log, so binary search on the term (a walk back
        // would cost the term's length on every rejected AppendEntries).
        Index(self.entries.partition_point(|entry| entry.term < term) as u64 + 1)
    }

    /// The last index holding `term`, if any entry does.
    pub fn last_index_of_term(&self, term: Term) -> Option<Index> {
        // Terms never decrease along the log, so binary search on the term.
        let after = self.entries.partition_point(|entry| entry.term <= term);
        if after == 0 || self.entries[after - 1].term != term {
            return None;
        }
        Some(Index(after as u64))
    }

    /// The first of `entries` that this log lacks or holds with another term, if any.
    ///
    /// `entries` must be contiguous; ones this log already holds with the same term are
    /// skipped, so that a stale or duplicated AppendEntries never truncates anything.
    pub fn first_conflict(&self, entries: &[Entry]) -> Option<usize> {
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
            self.entries.push(entry.clone());
        }
    }

    /// Removes every entry above `index`.
    pub fn truncate_after(&mut self, index: Index) {
        self.entries.truncate(index.0 as usize);
    }
}
