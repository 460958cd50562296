//! What the checker reads of a node: a borrowed view, taken from a live `RaftCore` and its
//! disk, or fabricated by a test.
//!
//! The core holds only a window of its log (`replog_core::Log`); what lies before the
//! window is on the node's disk, committed and durable. The checker reasons about the whole
//! log, so a view joins the two: the disk's entries up to the window's edge, then the
//! window.

use crate::disk::Disk;
use replog_core::{Entry, EntryId, Index, NodeId, RaftCore, Role, Term};

#[derive(Clone, Copy, Debug)]
pub struct NodeState<'a> {
    pub id: NodeId,
    pub role: Role,
    pub term: Term,
    pub commit_index: Index,
    pub applied_index: Index,
    /// The log before the window: the node's durable entries after `stored_boundary` (only
    /// those up to `window_prev.index` are read). What lies at or before the boundary was
    /// trimmed (or replaced by an install): committed, and no longer held by this node.
    /// Invariant: `stored[k].index == stored_boundary.index + 1 + k`.
    pub stored: &'a [Entry],
    pub stored_boundary: EntryId,
    /// The boundary of an install written but not yet synced, if any.
    pub pending_install: Option<EntryId>,
    /// The entry before `window`.
    pub window_prev: EntryId,
    /// The entries the core holds, from `window_prev.index + 1`.
    pub window: &'a [Entry],
}

impl<'a> NodeState<'a> {
    /// The view of a live core and its disk.
    pub fn of(core: &'a RaftCore, disk: &'a Disk) -> NodeState<'a> {
        let log = core.log();
        let durable = disk.durable();
        NodeState {
            id: core.id(),
            role: core.role(),
            term: core.term(),
            commit_index: core.commit_index(),
            applied_index: core.applied_index(),
            stored: &durable.entries,
            stored_boundary: durable.boundary,
            pending_install: disk.unsynced_install(),
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
            stored_boundary: EntryId::ZERO,
            pending_install: None,
            window_prev: EntryId::ZERO,
            window: log,
        }
    }

    pub fn entry(&self, index: Index) -> Option<&'a Entry> {
        if index == Index(0) {
            return None;
        }
        if index <= self.window_prev.index {
            let installing = self.pending_install.is_some_and(|b| index <= b.index);
            if index <= self.stored_boundary.index || installing {
                return None; // Trimmed here, or being replaced by an install.
            }
            let position = index.0 - self.stored_boundary.index.0 - 1;
            return self.stored.get(position as usize);
        }
        let position = (index.0 - self.window_prev.index.0 - 1) as usize;
        self.window.get(position)
    }

    /// Term 0 at index 0, `None` past the end or where trimmed (but the term of a boundary
    /// is known).
    pub fn term_at(&self, index: Index) -> Option<Term> {
        if index == Index(0) {
            return Some(Term(0));
        }
        if index == self.window_prev.index {
            return Some(self.window_prev.term);
        }
        if let Some(boundary) = self.pending_install.filter(|b| b.index == index) {
            return Some(boundary.term);
        }
        if index == self.stored_boundary.index {
            return Some(self.stored_boundary.term);
        }
        self.entry(index).map(|entry| entry.term)
    }

    /// The first index this node still holds (entries before it were trimmed).
    pub fn first_index(&self) -> Index {
        // Being replaced by an install: nothing up to its boundary is held any more.
        if let Some(boundary) = self.pending_install {
            return boundary.index.next();
        }
        self.stored_boundary
            .index
            .min(self.window_prev.index)
            .next()
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
    /// core may forget only what storage can give back (or what a trim let go since).
    pub fn window_edge_is_stored(&self) -> bool {
        let edge = self.window_prev;
        edge.index < self.stored_boundary.index
            || edge == self.stored_boundary
            || self.pending_install == Some(edge)
            || self.entry(edge.index).map(Entry::id) == Some(edge)
    }

    /// Entries `from..=to` of the whole log, cloned (for rare, whole-log checks).
    pub fn entries(&self, from: Index, to: Index) -> Vec<Entry> {
        (from.0..=to.0)
            .filter_map(|k| self.entry(Index(k)).cloned())
            .collect()
    }
}
