//! What the checker reads of a node: a borrowed view, taken from a live `RaftCore` and its
//! disk, or fabricated by a test.
//!
//! The core holds only a window of its log (`replog_core::Log`); what lies before the
//! window is on the node's disk, committed and durable. The checker reasons about the whole
//! log, so a view joins the two: the disk's entries up to the window's edge, then the
//! window.

use replog_core::{Entry, EntryId, Index, NodeId, RaftCore, Role, Term};

#[derive(Clone, Copy, Debug)]
pub struct NodeState<'a> {
    pub id: NodeId,
    pub role: Role,
    pub term: Term,
    pub commit_index: Index,
    pub applied_index: Index,
    /// The log before the window: the node's durable entries from index 1 (only those up to
    /// `window_prev.index` are read).
    /// Invariant: `stored[k].index == k + 1`, `stored.len() >= window_prev.index`.
    pub stored: &'a [Entry],
    /// The entry before `window`.
    pub window_prev: EntryId,
    /// The entries the core holds, from `window_prev.index + 1`.
    pub window: &'a [Entry],
}

impl<'a> NodeState<'a> {
    /// The view of a live core whose durable log is `stored`.
    pub fn of(core: &'a RaftCore, stored: &'a [Entry]) -> NodeState<'a> {
        let log = core.log();
        NodeState {
            id: core.id(),
            role: core.role(),
            term: core.term(),
            commit_index: core.commit_index(),
            applied_index: core.applied_index(),
            stored,
            window_prev: log.prev(),
            window: log.held(),
        }
    }

    /// A view of a whole log held in memory (for fabricated states).
    pub fn whole(
        id: NodeId,
        role: Role,
        term: Term,
        commit_index: Index,
        log: &'a [Entry],
    ) -> NodeState<'a> {
        NodeState {
            id,
            role,
            term,
            commit_index,
            applied_index: Index(0),
            stored: &[],
            window_prev: EntryId::ZERO,
            window: log,
        }
    }

    pub fn entry(&self, index: Index) -> Option<&'a Entry> {
        if index == Index(0) {
            return None;
        }
        if index <= self.window_prev.index {
            return self.stored.get(index.0 as usize - 1);
        }
        let position = (index.0 - self.window_prev.index.0 - 1) as usize;
        self.window.get(position)
    }

    /// Term 0 at index 0, `None` past the end.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        if index == Index(0) {
            return Some(Term(0));
        }
        self.entry(index).map(|entry| entry.term)
    }

    pub fn last_index(&self) -> Index {
        self.window_prev.index.plus(self.window.len() as u64)
    }

    pub fn last_term(&self) -> Term {
        self.window
            .last()
            .map_or(self.window_prev.term, |entry| entry.term)
    }

    /// Whether the disk holds, at the window's edge, the entry the core says is there: the
    /// core may forget only what storage can give back.
    pub fn window_edge_is_stored(&self) -> bool {
        let edge = self.window_prev;
        edge.index == Index(0)
            || self.stored.get(edge.index.0 as usize - 1).map(Entry::id) == Some(edge)
    }

    /// Entries `from..=to` of the whole log, cloned (for rare, whole-log checks).
    pub fn entries(&self, from: Index, to: Index) -> Vec<Entry> {
        (from.0..=to.0)
            .filter_map(|k| self.entry(Index(k)).cloned())
            .collect()
    }
}
