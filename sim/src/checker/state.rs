//! What the checker reads of a node: a borrowed view, taken from a live `RaftCore` or
//! fabricated by a test.

use replog_core::{Entry, Index, NodeId, RaftCore, Role, Term};

#[derive(Clone, Copy, Debug)]
pub struct NodeState<'a> {
    pub id: NodeId,
    pub role: Role,
    pub term: Term,
    pub commit_index: Index,
    pub applied_index: Index,
    /// Invariant: `log[k].index == k + 1`.
    pub log: &'a [Entry],
}

impl<'a> NodeState<'a> {
    pub fn of(core: &'a RaftCore) -> NodeState<'a> {
        NodeState {
            id: core.id(),
            role: core.role(),
            term: core.term(),
            commit_index: core.commit_index(),
            applied_index: core.applied_index(),
            log: core.log().entries(),
        }
    }

    pub fn entry(&self, index: Index) -> Option<&'a Entry> {
        let position = index.0.checked_sub(1)? as usize;
        self.log.get(position)
    }

    /// Term 0 at index 0, `None` past the end.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        if index == Index(0) {
            return Some(Term(0));
        }
        self.entry(index).map(|entry| entry.term)
    }

    pub fn last_index(&self) -> Index {
        Index(self.log.len() as u64)
    }

    pub fn last_term(&self) -> Term {
        self.log.last().map_or(Term(0), |entry| entry.term)
    }
}
